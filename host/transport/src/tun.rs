//! GOST's TUN listener (`tun`; listener/tun): a TUN device with the
//! service's `net` addresses, up, with its routes in the system table;
//! the device is the listener's one "connection", which the `tun`
//! handler joins to a UDP tunnel. When the handler lets go of the device
//! (it closed with an error) the listener makes a new one a second later,
//! as GOST's does; when the service stops the device is closed, and the
//! kernel removes it.
//!
//! The accepted connection is a [`Stream`] that carries no bytes: the
//! device and its settings travel attached to it as a [`TunConn`], which
//! only the `tun` handler takes (the factory pairs the two). The `tap`
//! listener is the same with a TAP device (Ethernet frames), for the
//! `tap` handler.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use gost_core::metadata::Metadata;
use gost_core::stream::{Endpoints, Stream};
use ipnet::IpNet;
use tokio::sync::oneshot;

use crate::listener::{AcceptFuture, Accepted, Conn, Listener};

/// GOST's default MTU for the device (listener/tun/metadata.go).
pub const DEFAULT_MTU: u16 = 1420;

/// A route through the tunnel: to `net` via the device, or via
/// `gateway` (an address of a tunnel peer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub net: IpNet,
    pub gateway: Option<IpAddr>,
}

/// The listener's options (GOST's keys, each also with a `tun.` prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunConfig {
    /// A TAP device (Ethernet frames, the `tap` listener) rather than TUN.
    pub tap: bool,
    /// `name`: the device's name; the kernel picks one (`tunN`) if empty.
    pub name: String,
    /// `net`: the device's address and prefix.
    pub net: Option<IpNet>,
    /// `mtu`.
    pub mtu: u16,
    /// `gw`: the gateway of the `route` list.
    pub gateway: Option<IpAddr>,
    /// `route` (a comma list of CIDRs via `gw`) and `routes` (each
    /// `CIDR [gateway]`).
    pub routes: Vec<Route>,
    /// `router` (TUN only): the name of a `routers` object the server
    /// asks for the gateway client of a destination its own routes miss.
    pub router: Option<String>,
}

impl TunConfig {
    /// GOST's keys; what this build does not do (more than one `net`, an
    /// IPv6 `net`, `dns`) is refused with a message.
    pub fn from_metadata(md: &Metadata) -> Result<Self, String> {
        Self::parse(md, false)
    }

    /// The `tap` listener's keys: the same, without the `tun.` prefixes.
    pub fn tap_from_metadata(md: &Metadata) -> Result<Self, String> {
        Self::parse(md, true)
    }

    fn parse(md: &Metadata, tap: bool) -> Result<Self, String> {
        let kind = if tap { "tap" } else { "tun" };
        let get = |k: &str| -> Result<Option<String>, String> {
            match md.get_string(k).map_err(|e| e.to_string())? {
                Some(v) => Ok(Some(v)),
                None if !tap => md
                    .get_string(&format!("tun.{k}"))
                    .map_err(|e| e.to_string()),
                None => Ok(None),
            }
        };
        let refused: &[&str] = if tap { &["dns", "router"] } else { &["dns"] };
        for &refused in refused {
            if get(refused)?.is_some_and(|v| !v.trim().is_empty()) {
                return Err(format!(
                    "{kind} listener: `{refused}` is not supported by this build"
                ));
            }
        }
        let mut nets = Vec::new();
        for s in get("net")?.unwrap_or_default().split(',') {
            let s = s.trim();
            if s.is_empty() {
                continue;
            }
            let net: IpNet = s.parse().map_err(|_| {
                format!("{kind} listener: net {s:?} is not an address with a prefix (CIDR)")
            })?;
            nets.push(net);
        }
        if nets.len() > 1 || nets.iter().any(|n| n.addr().is_ipv6()) {
            return Err(format!(
                "{kind} listener: only one IPv4 `net` is supported by this build (IPv6 and several addresses are not)"
            ));
        }
        let mtu = match md
            .get_int("mtu")
            .map_err(|e| e.to_string())?
            .or(md.get_int("tun.mtu").map_err(|e| e.to_string())?)
        {
            Some(m) if m > 0 => {
                u16::try_from(m).map_err(|_| format!("{kind} listener: mtu {m} is too large"))?
            }
            _ => DEFAULT_MTU,
        };
        let parse_ip = |key: &str, s: &str| -> Result<IpAddr, String> {
            s.trim()
                .parse()
                .map_err(|_| format!("{kind} listener: {key} {s:?} is not an IP address"))
        };
        let gateway = match get("gw")? {
            Some(g) if !g.trim().is_empty() => Some(parse_ip("gw", &g)?),
            _ => None,
        };
        let parse_net = |key: &str, s: &str| -> Result<IpNet, String> {
            // A bare address is a /32 or /128, as Go's ParseCIDR would
            // refuse it; GOST skips such entries silently, we say so.
            s.parse::<IpNet>()
                .map(|n| n.trunc())
                .map_err(|_| format!("{kind} listener: {key} {s:?} is not a CIDR"))
        };
        let mut routes = Vec::new();
        for s in get("route")?.unwrap_or_default().split(',') {
            let s = s.trim();
            if !s.is_empty() {
                routes.push(Route {
                    net: parse_net("route", s)?,
                    gateway,
                });
            }
        }
        let listed = match md.get_strings("routes").map_err(|e| e.to_string())? {
            Some(v) => Some(v),
            None => md.get_strings("tun.routes").map_err(|e| e.to_string())?,
        };
        // A URL gives one string, GOST splits it at commas.
        let listed: Vec<String> = match listed {
            Some(v) if v.len() == 1 => v[0].split(',').map(str::to_string).collect(),
            Some(v) => v,
            None => Vec::new(),
        };
        for s in listed {
            let s = s.trim();
            if s.is_empty() {
                continue;
            }
            let (cidr, gw) = match s.split_once(' ') {
                Some((c, g)) => (c.trim(), Some(parse_ip("routes gateway", g)?)),
                None => (s, None),
            };
            routes.push(Route {
                net: parse_net("routes", cidr)?,
                gateway: gw.or(gateway),
            });
        }
        if routes.iter().any(|r| r.net.addr().is_ipv6()) {
            return Err(format!(
                "{kind} listener: IPv6 routes are not supported by this build"
            ));
        }
        Ok(TunConfig {
            tap,
            name: get("name")?.unwrap_or_default(),
            net: nets.first().copied(),
            mtu,
            gateway,
            routes,
            router: match tap {
                true => None,
                false => get("router")?
                    .map(|r| r.trim().to_string())
                    .filter(|r| !r.is_empty()),
            },
        })
    }
}

/// What the `tun` handler takes from the accepted stream.
pub struct TunConn {
    pub device: Arc<tun::AsyncDevice>,
    pub config: Arc<TunConfig>,
    /// The device's name as the kernel gave it.
    pub name: String,
    /// Dropped with the handler's hold on the device: the listener then
    /// makes a new one.
    _released: oneshot::Sender<()>,
}

pub struct TunListen {
    addr: SocketAddr,
    config: Arc<TunConfig>,
    /// The device made at bind (to fail the service at start), then the
    /// signal that the handler let go of it.
    state: tokio::sync::Mutex<State>,
}

/// A device made, not yet handed to the handler.
struct Device {
    device: tun::AsyncDevice,
    name: String,
}

enum State {
    Ready(Box<Device>),
    InUse(oneshot::Receiver<()>),
}

impl TunListen {
    /// Makes the device now, so a missing permission or a bad setting
    /// fails the service at start. `addr` is the UDP address of the
    /// tunnel (the handler binds it).
    pub fn bind(addr: SocketAddr, config: TunConfig) -> io::Result<Self> {
        let dev = create(&config)?;
        Ok(TunListen {
            addr,
            config: Arc::new(config),
            state: tokio::sync::Mutex::new(State::Ready(Box::new(dev))),
        })
    }

    /// The stream that carries the device to the handler, and the signal
    /// that it let go.
    fn hand_over(&self, dev: Device) -> (Accepted, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let peer = self
            .config
            .net
            .map(|n| SocketAddr::new(n.addr(), 0))
            .unwrap_or(self.addr);
        let conn = TunConn {
            device: Arc::new(dev.device),
            config: self.config.clone(),
            name: dev.name,
            _released: tx,
        };
        let ends = Endpoints {
            local: Some(self.addr),
            peer: Some(peer),
        };
        let io = tokio::io::join(tokio::io::empty(), tokio::io::sink());
        let stream = Stream::boxed_with(io, ends, Box::new(conn));
        let accepted = Accepted {
            conn: Conn::Stream(stream),
            peer,
            local: self.addr,
        };
        (accepted, rx)
    }
}

/// A device up with its address, MTU and routes.
fn create(config: &TunConfig) -> io::Result<Device> {
    let mut c = tun::Configuration::default();
    if !config.name.is_empty() {
        c.tun_name(&config.name);
    }
    if let Some(net) = config.net {
        c.address(net.addr()).netmask(net.netmask());
    }
    if config.tap {
        c.layer(tun::Layer::L2);
    }
    c.mtu(config.mtu).up();
    let device =
        tun::create_as_async(&c).map_err(|e| io::Error::other(format!("tun device: {e}")))?;
    let name = tun::AbstractDevice::tun_name(&*device)
        .map_err(|e| io::Error::other(format!("tun device name: {e}")))?;
    for r in &config.routes {
        routes::replace(&name, r).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("add route {} via {:?}: {e}", r.net, r.gateway),
            )
        })?;
    }
    tracing::info!(name = %name, tap = config.tap, net = %config.net.map(|n| n.to_string()).unwrap_or_default(), mtu = config.mtu, routes = config.routes.len(), "tun device up");
    Ok(Device { device, name })
}

impl Listener for TunListen {
    fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn accept(&self) -> AcceptFuture<'_> {
        Box::pin(async move {
            let mut state = self.state.lock().await;
            loop {
                match std::mem::replace(&mut *state, State::InUse(oneshot::channel().1)) {
                    State::Ready(dev) => {
                        let (accepted, released) = self.hand_over(*dev);
                        *state = State::InUse(released);
                        return Ok(accepted);
                    }
                    State::InUse(released) => {
                        let _ = released.await;
                        // GOST waits a second before making the device anew.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        match create(&self.config) {
                            Ok(dev) => *state = State::Ready(Box::new(dev)),
                            Err(e) => {
                                // Stays in use with a closed signal: the next
                                // accept tries again after a second.
                                return Err(e);
                            }
                        }
                    }
                }
            }
        })
    }
}

/// Routes in the system table, as GOST's `netlink.RouteReplace`: through
/// the device, or via a gateway. IPv4, with the `SIOCADDRT` ioctl.
mod routes {
    use std::ffi::CString;
    use std::io;
    use std::mem::zeroed;
    use std::net::{IpAddr, Ipv4Addr};

    use super::Route;

    fn sockaddr(ip: Ipv4Addr) -> libc::sockaddr {
        // SAFETY: sockaddr_in fits in sockaddr; zero is a valid value.
        unsafe {
            let mut sa: libc::sockaddr = zeroed();
            let sin = (&mut sa as *mut libc::sockaddr).cast::<libc::sockaddr_in>();
            (*sin).sin_family = libc::AF_INET as libc::sa_family_t;
            (*sin).sin_addr.s_addr = u32::from(ip).to_be();
            sa
        }
    }

    fn ioctl(req: libc::c_ulong, rt: &mut libc::rtentry) -> io::Result<()> {
        // SAFETY: a plain datagram socket for the ioctl, closed below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: rt is a valid rtentry whose rt_dev (if set) outlives the call.
        let r = unsafe { libc::ioctl(fd, req as _, rt as *mut libc::rtentry) };
        let err = io::Error::last_os_error();
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
        if r < 0 {
            Err(err)
        } else {
            Ok(())
        }
    }

    pub(super) fn replace(dev: &str, r: &Route) -> io::Result<()> {
        let (IpAddr::V4(dst), IpAddr::V4(mask)) = (r.net.network(), r.net.netmask()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "IPv6 routes are not supported",
            ));
        };
        let dev = CString::new(dev)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "device name"))?;
        // SAFETY: zero is a valid rtentry.
        let mut rt: libc::rtentry = unsafe { zeroed() };
        rt.rt_dst = sockaddr(dst);
        rt.rt_genmask = sockaddr(mask);
        rt.rt_flags = libc::RTF_UP;
        if r.net.prefix_len() == 32 {
            rt.rt_flags |= libc::RTF_HOST;
        }
        match r.gateway {
            Some(IpAddr::V4(gw)) => {
                rt.rt_gateway = sockaddr(gw);
                rt.rt_flags |= libc::RTF_GATEWAY;
            }
            Some(IpAddr::V6(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "an IPv6 gateway for an IPv4 route",
                ));
            }
            None => rt.rt_dev = dev.as_ptr().cast_mut(),
        }
        match ioctl(libc::SIOCADDRT, &mut rt) {
            // Replace: the route exists already (from an earlier device).
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                let mut old: libc::rtentry = rt;
                old.rt_dev = std::ptr::null_mut();
                old.rt_flags = libc::RTF_UP;
                ioctl(libc::SIOCDELRT, &mut old)?;
                ioctl(libc::SIOCADDRT, &mut rt)
            }
            r => r,
        }
    }
}

/// The `tun` and `tap` listener kinds.
pub fn register(r: &mut crate::kinds::Transports) {
    r.add_listener(crate::kinds::ListenerKind {
        names: &["tap"],
        socket: crate::kinds::Socket::Tap,
        upgrade: None,
        uses_tls: false,
        summary: "a TAP device (Ethernet frames; `net`, `mtu`, `name`, `route`, `routes`, `gw`) for the `tap` handler's UDP tunnel",
    });
    r.add_listener(crate::kinds::ListenerKind {
        names: &["tun"],
        socket: crate::kinds::Socket::Tun,
        upgrade: None,
        uses_tls: false,
        summary: "a TUN device (`net`, `mtu`, `name`, `route`, `routes`, `gw`, `router`) for the `tun` handler's UDP tunnel",
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(pairs: &[(&str, serde_json::Value)]) -> Metadata {
        let m: std::collections::BTreeMap<String, serde_json::Value> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        Metadata::from(m)
    }

    #[test]
    fn gosts_keys_with_their_defaults() {
        let c = TunConfig::from_metadata(&md(&[
            ("net", "192.168.123.1/24".into()),
            ("gw", "192.168.123.2".into()),
            ("route", "10.100.0.0/16, 172.20.1.0/24".into()),
            (
                "tun.routes",
                serde_json::json!(["10.138.0.0/16 192.168.123.3", "10.9.0.0/16"]),
            ),
        ]))
        .unwrap();
        assert_eq!(c.mtu, DEFAULT_MTU);
        assert_eq!(c.net, Some("192.168.123.1/24".parse().unwrap()));
        let gw2: IpAddr = "192.168.123.2".parse().unwrap();
        let gw3: IpAddr = "192.168.123.3".parse().unwrap();
        let want: Vec<(IpNet, Option<IpAddr>)> = vec![
            ("10.100.0.0/16".parse().unwrap(), Some(gw2)),
            ("172.20.1.0/24".parse().unwrap(), Some(gw2)),
            ("10.138.0.0/16".parse().unwrap(), Some(gw3)),
            ("10.9.0.0/16".parse().unwrap(), Some(gw2)),
        ];
        let got: Vec<_> = c.routes.iter().map(|r| (r.net, r.gateway)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn what_is_not_done_is_refused() {
        for (k, v) in [
            ("net", "fd::1/64"),
            ("net", "10.0.0.1/24,10.1.0.1/24"),
            ("dns", "1.1.1.1"),
            ("route", "fd::/64"),
            ("net", "10.0.0.1"),
        ] {
            assert!(
                TunConfig::from_metadata(&md(&[(k, v.into())])).is_err(),
                "{k}={v}"
            );
        }
    }
}
