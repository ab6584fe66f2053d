//! Resolver (GOST's `resolver`): looks names up on the configured DNS
//! servers in order, over UDP or TCP, falling back to the next server when
//! one fails or times out, and caches answers for their TTL (or the
//! server's `ttl`). Messages are encoded and decoded with hickory-proto.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::config::{Config, NameserverConfig, ResolverConfig};

/// GOST's per-exchange timeout when a server sets none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    #[error("resolver \"{0}\" not found")]
    NotFound(String),
    #[error("resolver \"{resolver}\": nameserver \"{addr}\": {msg}")]
    Nameserver {
        resolver: String,
        addr: String,
        msg: String,
    },
    #[error(transparent)]
    Plugin(#[from] crate::plugin::PluginError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn parse(s: &str) -> Result<Option<Family>, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "ipv4" | "ip4" => Ok(Some(Family::V4)),
            "ipv6" | "ip6" => Ok(Some(Family::V6)),
            other => Err(format!("invalid address family {other:?} (ipv4, ipv6)")),
        }
    }

    fn record_type(self) -> RecordType {
        match self {
            Family::V4 => RecordType::A,
            Family::V6 => RecordType::AAAA,
        }
    }

    fn other(self) -> Family {
        match self {
            Family::V4 => Family::V6,
            Family::V6 => Family::V4,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

#[derive(Debug)]
struct Nameserver {
    /// As configured, for logs.
    shown: String,
    transport: Transport,
    /// `host:port`; a name is looked up with the system resolver.
    addr: String,
    prefer: Option<Family>,
    only: Option<Family>,
    ttl: Option<Duration>,
    timeout: Duration,
}

impl Nameserver {
    fn from_config(cfg: &NameserverConfig) -> Result<Nameserver, String> {
        if !cfg.chain.is_empty() {
            return Err("chain is not supported yet".into());
        }
        if !cfg.client_ip.is_empty() {
            return Err("clientIP is not supported yet".into());
        }
        if cfg.r#async {
            return Err("async is not supported yet".into());
        }
        let (transport, rest) = match cfg.addr.split_once("://") {
            None => (Transport::Udp, cfg.addr.as_str()),
            Some(("udp", r)) => (Transport::Udp, r),
            Some(("tcp", r)) => (Transport::Tcp, r),
            Some((scheme, _)) => {
                return Err(format!("scheme '{scheme}' is not supported yet (udp, tcp)"))
            }
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() {
            return Err("address is empty".into());
        }
        let has_port = rest.starts_with('[') && rest.contains("]:")
            || (!rest.starts_with('[') && rest.matches(':').count() == 1);
        let bare = rest.trim_start_matches('[').trim_end_matches(']');
        let addr = match (has_port, bare.parse::<IpAddr>()) {
            (true, _) => rest.to_string(),
            (false, Ok(IpAddr::V6(ip))) => format!("[{ip}]:53"),
            (false, _) => format!("{bare}:53"),
        };
        Ok(Nameserver {
            shown: cfg.addr.clone(),
            transport,
            addr,
            prefer: Family::parse(&cfg.prefer)?,
            only: Family::parse(&cfg.only)?,
            ttl: Some(cfg.ttl.0).filter(|t| !t.is_zero()),
            timeout: Some(cfg.timeout.0)
                .filter(|t| !t.is_zero())
                .unwrap_or(DEFAULT_TIMEOUT),
        })
    }

    async fn exchange(&self, query: &[u8]) -> Result<Vec<u8>, String> {
        let target: SocketAddr = tokio::net::lookup_host(&self.addr)
            .await
            .map_err(|e| e.to_string())?
            .next()
            .ok_or("no address")?;
        match self.transport {
            Transport::Udp => {
                let bind: SocketAddr = if target.is_ipv4() {
                    ([0u8; 4], 0).into()
                } else {
                    ([0u16; 8], 0).into()
                };
                let sock = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
                sock.connect(target).await.map_err(|e| e.to_string())?;
                sock.send(query).await.map_err(|e| e.to_string())?;
                let mut buf = vec![0u8; 4096];
                let n = sock.recv(&mut buf).await.map_err(|e| e.to_string())?;
                buf.truncate(n);
                Ok(buf)
            }
            Transport::Tcp => {
                let mut s = TcpStream::connect(target)
                    .await
                    .map_err(|e| e.to_string())?;
                let len = u16::try_from(query.len()).map_err(|_| "query too long")?;
                let mut framed = len.to_be_bytes().to_vec();
                framed.extend_from_slice(query);
                s.write_all(&framed).await.map_err(|e| e.to_string())?;
                let mut len = [0u8; 2];
                s.read_exact(&mut len).await.map_err(|e| e.to_string())?;
                let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
                s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
                Ok(buf)
            }
        }
    }

    /// The addresses of one family; an empty list is a valid answer.
    async fn query(&self, host: &str, family: Family) -> Result<(Vec<IpAddr>, u32), String> {
        let name = Name::from_ascii(format!("{host}.")).map_err(|e| e.to_string())?;
        let id: u16 = rand::random();
        let mut msg = Message::new();
        msg.set_id(id)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .add_query(Query::query(name, family.record_type()));
        let bytes = msg.to_vec().map_err(|e| e.to_string())?;
        let reply = tokio::time::timeout(self.timeout, self.exchange(&bytes))
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))??;
        let reply = Message::from_vec(&reply).map_err(|e| format!("bad reply: {e}"))?;
        if reply.id() != id {
            return Err("reply id does not match the query".into());
        }
        match reply.response_code() {
            ResponseCode::NoError | ResponseCode::NXDomain => {}
            rc => return Err(format!("server answered {rc}")),
        }
        let mut ttl = u32::MAX;
        let ips: Vec<IpAddr> = reply
            .answers()
            .iter()
            .filter_map(|r| {
                let ip = match r.data() {
                    RData::A(a) => IpAddr::V4(a.0),
                    RData::AAAA(a) => IpAddr::V6(a.0),
                    _ => return None,
                };
                ttl = ttl.min(r.ttl());
                Some(ip)
            })
            .collect();
        let ttl = if ips.is_empty() { 0 } else { ttl };
        Ok((ips, ttl))
    }
}

type CacheKey = (usize, String, RecordType);

#[derive(Debug)]
pub struct Resolver {
    pub name: String,
    /// GOST's resolver asks its plugin instead of nameservers when it has
    /// one.
    plugin: Option<crate::plugin::Plugin>,
    servers: Vec<Nameserver>,
    cache: Mutex<HashMap<CacheKey, (Vec<IpAddr>, Instant)>>,
}

impl Resolver {
    pub fn from_config(cfg: &ResolverConfig) -> Result<Resolver, ResolverError> {
        if let Some(p) = &cfg.plugin {
            return Ok(Resolver {
                name: cfg.name.clone(),
                plugin: Some(crate::plugin::Plugin::new("resolver", &cfg.name, p)?),
                servers: Vec::new(),
                cache: Mutex::new(HashMap::new()),
            });
        }
        let servers = cfg
            .nameservers
            .iter()
            .map(|ns| {
                Nameserver::from_config(ns).map_err(|msg| ResolverError::Nameserver {
                    resolver: cfg.name.clone(),
                    addr: ns.addr.clone(),
                    msg,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Resolver {
            name: cfg.name.clone(),
            plugin: None,
            servers,
            cache: Mutex::new(HashMap::new()),
        })
    }

    async fn cached_query(
        &self,
        idx: usize,
        host: &str,
        family: Family,
    ) -> Result<Vec<IpAddr>, String> {
        let key = (idx, host.to_ascii_lowercase(), family.record_type());
        if let Some((ips, expires)) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            if Instant::now() < expires {
                return Ok(ips);
            }
        }
        let server = &self.servers[idx];
        let (ips, ttl) = server.query(host, family).await?;
        let ttl = server.ttl.unwrap_or(Duration::from_secs(ttl.into()));
        if !ips.is_empty() && !ttl.is_zero() {
            if let Ok(mut c) = self.cache.lock() {
                c.insert(key, (ips.clone(), Instant::now() + ttl));
            }
        }
        Ok(ips)
    }

    /// GOST's order per server: `only` restricts to one family; otherwise
    /// the preferred family (the caller's `ip4`/`ip6`, else the server's
    /// `prefer`, else IPv4) is asked first and the other only if it gave
    /// nothing.
    async fn resolve_on(
        &self,
        idx: usize,
        host: &str,
        network: &str,
    ) -> Result<Vec<IpAddr>, String> {
        let server = &self.servers[idx];
        let caller = match network {
            "ip4" => Some(Family::V4),
            "ip6" => Some(Family::V6),
            _ => None,
        };
        let first = server
            .only
            .or(caller)
            .or(server.prefer)
            .unwrap_or(Family::V4);
        let ips = self.cached_query(idx, host, first).await?;
        if !ips.is_empty() || server.only.is_some() || caller.is_some() {
            return Ok(ips);
        }
        self.cached_query(idx, host, first.other()).await
    }

    /// The addresses of `host` (an IP is returned as it is). Servers are
    /// tried in order until one answers with addresses; a failing server is
    /// logged and the next one asked.
    pub async fn resolve(&self, network: &str, host: &str) -> Result<Vec<IpAddr>, String> {
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return Ok(vec![ip]);
        }
        if let Some(p) = &self.plugin {
            // GOST's `resolver/plugin/http.go`: a failed call or `ok`
            // false is a failed resolution, so the dial fails.
            let req = gost_proto::plugin::ResolveRequest {
                network: network.to_string(),
                host: host.to_string(),
                client: String::new(),
            };
            let ips = crate::hosts::plugin_ips(p.call(req, "not resolved").await);
            if ips.is_empty() {
                return Err(format!(
                    "resolver {}: {host}: the plugin gave no address",
                    self.name
                ));
            }
            return Ok(ips);
        }
        let mut errors = Vec::new();
        for idx in 0..self.servers.len() {
            match self.resolve_on(idx, host, network).await {
                Ok(ips) if !ips.is_empty() => {
                    tracing::debug!(resolver = %self.name, host, server = %self.servers[idx].shown, ?ips, "resolved");
                    return Ok(ips);
                }
                Ok(_) => errors.push(format!("{}: no address", self.servers[idx].shown)),
                Err(e) => {
                    tracing::warn!(resolver = %self.name, host, server = %self.servers[idx].shown, error = %e, "nameserver failed, trying the next");
                    errors.push(format!("{}: {e}", self.servers[idx].shown));
                }
            }
        }
        Err(format!(
            "resolver {}: {host}: {}",
            self.name,
            if errors.is_empty() {
                "no nameservers".to_string()
            } else {
                errors.join("; ")
            }
        ))
    }
}

pub fn find(root: &Config, name: &str) -> Result<Option<Arc<Resolver>>, ResolverError> {
    if name.is_empty() {
        return Ok(None);
    }
    let cfg = root
        .resolvers
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| ResolverError::NotFound(name.to_string()))?;
    Ok(Some(Arc::new(Resolver::from_config(cfg)?)))
}

/// GOST's `Resolve`: `host:port` with the host replaced by its first
/// address from `hosts`, else from `resolver`; unchanged when neither is
/// set or the host is already an IP. A name neither knows is an error.
pub async fn resolve_addr(
    addr: &str,
    hosts: Option<&crate::hosts::Hosts>,
    resolver: Option<&Resolver>,
) -> std::io::Result<String> {
    if hosts.is_none() && resolver.is_none() {
        return Ok(addr.to_string());
    }
    let Ok((host, port)) = crate::addr::split_host_port(addr) else {
        return Ok(addr.to_string());
    };
    if host.is_empty() || host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(addr.to_string());
    }
    let with_port = |ip: std::net::IpAddr| match ip {
        std::net::IpAddr::V4(v4) => format!("{v4}:{port}"),
        std::net::IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    };
    if let Some(h) = hosts {
        if let Some(ip) = h.lookup("ip", host).await.first() {
            return Ok(with_port(*ip));
        }
    }
    if let Some(r) = resolver {
        return match r.resolve("ip", host).await {
            Ok(ips) => Ok(with_port(ips[0])),
            Err(e) => Err(std::io::Error::new(std::io::ErrorKind::NotFound, e)),
        };
    }
    Ok(addr.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, AAAA};
    use hickory_proto::rr::Record;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A UDP DNS server answering A with 10.0.0.<n> and AAAA with ::<n>,
    /// counting the queries it gets.
    async fn dns_server(n: u8) -> (SocketAddr, Arc<AtomicUsize>) {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((len, peer)) = sock.recv_from(&mut buf).await {
                c.fetch_add(1, Ordering::SeqCst);
                let q = Message::from_vec(&buf[..len]).unwrap();
                let query = q.queries()[0].clone();
                let mut r = Message::new();
                r.set_id(q.id()).set_message_type(MessageType::Response);
                let data = match query.query_type() {
                    RecordType::A => RData::A(A::new(10, 0, 0, n)),
                    _ => RData::AAAA(AAAA::new(0, 0, 0, 0, 0, 0, 0, n as u16)),
                };
                r.add_answer(Record::from_rdata(query.name().clone(), 60, data));
                r.add_query(query);
                sock.send_to(&r.to_vec().unwrap(), peer).await.unwrap();
            }
        });
        (addr, count)
    }

    fn resolver(servers: &[(String, &str)]) -> Resolver {
        Resolver::from_config(&ResolverConfig {
            name: "r".into(),
            nameservers: servers
                .iter()
                .map(|(addr, prefer)| NameserverConfig {
                    addr: addr.clone(),
                    prefer: prefer.to_string(),
                    timeout: crate::config::Duration(Duration::from_millis(200)),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn answers_are_cached_and_prefer_picks_the_family() {
        let (addr, count) = dns_server(7).await;
        let r = resolver(&[(format!("udp://{addr}"), "")]);
        let ips = r.resolve("ip", "example.test").await.unwrap();
        assert_eq!(ips, ["10.0.0.7".parse::<IpAddr>().unwrap()]);
        r.resolve("ip", "EXAMPLE.test").await.unwrap();
        assert_eq!(
            count.load(Ordering::SeqCst),
            1,
            "second lookup came from cache"
        );
        let r6 = resolver(&[(addr.to_string(), "ipv6")]);
        assert_eq!(
            r6.resolve("ip", "example.test").await.unwrap(),
            ["::7".parse::<IpAddr>().unwrap()]
        );
    }

    #[tokio::test]
    async fn silent_server_times_out_and_the_next_answers() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (addr, _) = dns_server(9).await;
        let r = resolver(&[
            (silent.local_addr().unwrap().to_string(), ""),
            (addr.to_string(), ""),
        ]);
        let start = Instant::now();
        let ips = r.resolve("ip", "a.test").await.unwrap();
        assert_eq!(ips, ["10.0.0.9".parse::<IpAddr>().unwrap()]);
        assert!(start.elapsed() >= Duration::from_millis(200));
        let only_silent = resolver(&[(silent.local_addr().unwrap().to_string(), "")]);
        let e = only_silent.resolve("ip", "a.test").await.unwrap_err();
        assert!(e.contains("no answer within"), "{e}");
        drop(silent);
    }

    #[test]
    fn nameserver_addresses_and_bad_ones() {
        let ns = |a: &str| {
            Nameserver::from_config(&NameserverConfig {
                addr: a.into(),
                ..Default::default()
            })
        };
        assert_eq!(ns("1.1.1.1").unwrap().addr, "1.1.1.1:53");
        assert_eq!(ns("tcp://[::1]").unwrap().addr, "[::1]:53");
        assert_eq!(ns("tcp://[::1]:5353").unwrap().transport, Transport::Tcp);
        assert!(ns("tls://1.1.1.1:853").unwrap_err().contains("'tls'"));
    }
}
