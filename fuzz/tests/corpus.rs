//! The fuzz targets on stable, as CI runs them: every saved corpus input
//! (the seeds and what fuzzing found, each finding a regression case),
//! then a bounded number of mutations of them, each named by its seed.

use std::path::{Path, PathBuf};

/// Mutations per target: a few seconds in all in a debug build. The
/// handlers target runs nine handlers twice per input, with sockets.
fn mutations(target: &str) -> u64 {
    match target {
        "handlers" => 300,
        "config" | "cli" => 1500,
        _ => 4000,
    }
}

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a corpus entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, bytes)
        })
        .collect()
}

#[test]
fn every_target_has_a_corpus_and_a_libfuzzer_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, _) in gost_fuzz::TARGETS {
        assert!(!corpus(name).is_empty(), "{name}: empty corpus");
        let bin = root
            .join("libfuzzer/fuzz_targets")
            .join(format!("{name}.rs"));
        assert!(bin.exists(), "{name}: no {}", bin.display());
    }
}

#[test]
fn the_saved_corpus_passes_and_so_do_its_mutations() {
    for (name, target) in gost_fuzz::TARGETS {
        let inputs = corpus(name);
        for (path, bytes) in &inputs {
            if let Err(e) = std::panic::catch_unwind(|| target(bytes)) {
                std::panic::resume_unwind(Box::new(format!("{name}: {}: {e:?}", path.display())));
            }
        }
        let seeds: Vec<&[u8]> = inputs.iter().map(|(_, b)| b.as_slice()).collect();
        for (seed, bytes) in gost_core::test_util::mutations(&seeds, mutations(name)) {
            if std::panic::catch_unwind(|| target(&bytes)).is_err() {
                panic!("{name}: mutation seed {seed} fails: {bytes:?}");
            }
        }
    }
}
