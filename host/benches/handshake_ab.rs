//! The SOCKS5 handshake of the native handler against the example plugin,
//! in alternating batches within one process.
//!
//! Criterion's `socks5 handshake` group times one function and then the
//! other; on a VM whose speed drifts by a third within minutes the two
//! figures then come from different machines. Here every round times a
//! batch of each (which one goes first alternates), so both see the same
//! drift, and the ratio within a round cancels it. The median ratio is the
//! in-process counterpart of `bench/plugin.sh`'s connections/s ratio.
//!
//!     cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml
//!     cargo bench -p gost-host --bench handshake_ab [-- ROUNDS [BATCH] [--two-step]]
//!
//! `--two-step` makes the client wait for the method reply before it
//! sends the request, as curl and the load generator do, so the handler
//! waits once per handshake (for the plugin: its instance parks).
//!
//! Pin it to one core (`taskset -c 1`) as the other benchmarks do.

use std::time::Duration;

use gost_handler::socks::{Socks5Handler, Socks5Options};
use gost_handler::Handler;

mod common;

use common::{closing_target, setup, socks5, wasm_handler, SOCKS5_PLUGIN};

fn main() {
    // cargo bench passes `--bench`; numbers are ours.
    let mut nums = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let mut arg = |default: u64| {
        nums.next()
            .map(|a| a.parse().expect("ROUNDS and BATCH are whole numbers"))
            .unwrap_or(default)
    };
    let (rounds, batch) = (arg(40), arg(200));
    let two_step = std::env::args().any(|a| a == "--two-step");
    let (rt, l, addr) = setup(SOCKS5_PLUGIN);
    let target = closing_target();
    let native = Socks5Handler::new(Default::default(), None, Socks5Options::default());
    let wasm = wasm_handler(SOCKS5_PLUGIN, "pooled");
    let (native, wasm): (&dyn Handler, &dyn Handler) = (&native, &wasm);
    let per_handshake =
        |h: &dyn Handler| rt.block_on(socks5(&l, addr, target, h, batch, two_step)) / batch as u32;
    for h in [native, wasm] {
        per_handshake(h);
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (mut n, mut w, mut extra, mut ratio) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (tn, tw) = if round % 2 == 0 {
            let tn = per_handshake(native);
            (tn, per_handshake(wasm))
        } else {
            let tw = per_handshake(wasm);
            (per_handshake(native), tw)
        };
        n.push(us(tn));
        w.push(us(tw));
        extra.push(us(tw) - us(tn));
        ratio.push(tn.as_secs_f64() / tw.as_secs_f64());
    }
    let [_, n, _] = quartiles(&mut n);
    let [_, w, _] = quartiles(&mut w);
    let [e1, e, e3] = quartiles(&mut extra);
    let [r1, r, r3] = quartiles(&mut ratio);
    let client = if two_step { "two-step" } else { "pipelined" };
    println!(
        "socks5 handshake ({client} client), {rounds} rounds of {batch} per side, alternating"
    );
    println!("  native:     {n:7.1} us (median)");
    println!("  wasm:       {w:7.1} us (median)");
    println!("  wasm extra: {e:7.1} us (median of rounds; quartiles {e1:.1}-{e3:.1})");
    println!("  rate ratio wasm/native: {r:.3} (median of rounds; quartiles {r1:.3}-{r3:.3})");
}

/// First quartile, median and third quartile.
fn quartiles(v: &mut [f64]) -> [f64; 3] {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let q = |f: f64| v[((v.len() - 1) as f64 * f).round() as usize];
    [q(0.25), q(0.5), q(0.75)]
}
