//! GOST's `dns` handler (go-gost/x handler/dns): a DNS proxy. Each query
//! (a datagram of a UDP session, or a length-prefixed message on a
//! stream) is answered in GOST's order:
//!
//! 1. the service's `rlimiter`, per query: over the limit gets no answer;
//! 2. a class IN name the service's `bypass` matches gets an empty
//!    NOERROR answer (GOST's refusal);
//! 3. an A or AAAA name the service's `hosts` maps is answered from it
//!    (TTL 3600), without any upstream;
//! 4. a single-question query whose reply is cached is answered from the
//!    cache ([`cache`]); with `async`, an expired reply is answered at once
//!    and refreshed in the background;
//! 5. otherwise the query goes upstream ([`exchange`]) through the
//!    service's router, and the reply is cached and passed back.
//!
//! A query that does not parse, has no question, or is longer than
//! `bufferSize`, and one whose upstream fails, gets no answer, as in GOST
//! (its DNS server writes nothing when the handler fails): the client
//! times out and tries again or elsewhere.

pub mod cache;
pub mod exchange;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};

use gost_chain::router::Router;
use gost_core::escape::esc;
use gost_core::limiter::rate::RateLimiter;
use gost_core::metadata::{Metadata, MetadataError};
use gost_core::stream::Stream;
use gost_transport::listener::{Conn, UdpConn};

use crate::{ConnContext, HandleFuture, Handler, HandlerError};
use exchange::Upstream;

/// GOST's defaults.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_BUFFER_SIZE: usize = 4096;
/// GOST's fallback when neither `dns` nor the system names a server.
const DEFAULT_NAMESERVER: &str = "udp://127.0.0.1:53";
/// How long a stream may stay silent between queries when `readTimeout`
/// is not set: the idle timeout of GOST's DNS server over TCP.
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(8);
/// TTL of answers made from `hosts`, as GOST's (the default of its DNS
/// library's record parser).
const HOSTS_TTL: u32 = 3600;
/// Queries of one UDP client in flight at once; more wait in the
/// listener's queue.
const MAX_IN_FLIGHT: usize = 64;

#[derive(Debug, Clone)]
pub struct DnsOptions {
    /// `dns`: upstream servers, a list or comma-separated.
    pub upstreams: Vec<String>,
    /// `ttl`: how long replies are cached; zero takes the answers' TTLs.
    pub ttl: Duration,
    /// `timeout`: each upstream exchange's limit.
    pub timeout: Duration,
    /// `clientIP`: sent upstream as EDNS Client Subnet (/24 or /128).
    pub client_ip: Option<IpAddr>,
    /// `bufferSize`: the longest query taken.
    pub buffer_size: usize,
    /// `async`: answer an expired cached reply and refresh it behind.
    pub refresh_async: bool,
    /// `readTimeout`: a stream's wait for its next query.
    pub read_timeout: Duration,
}

impl DnsOptions {
    pub fn from_metadata(md: &Metadata) -> Result<Self, MetadataError> {
        let upstreams = md
            .get_strings("dns")?
            .unwrap_or_default()
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let client_ip = match md.get_string("clientIP")?.filter(|s| !s.is_empty()) {
            Some(s) => Some(s.parse::<IpAddr>().map_err(|_| MetadataError {
                key: "clientIP".into(),
                value: serde_json::Value::from(s).to_string(),
                expected: "an IP address",
            })?),
            None => None,
        };
        Ok(DnsOptions {
            upstreams,
            ttl: md.get_duration("ttl")?.unwrap_or_default(),
            timeout: md
                .get_duration("timeout")?
                .filter(|t| !t.is_zero())
                .unwrap_or(DEFAULT_TIMEOUT),
            client_ip,
            buffer_size: md
                .get_int("bufferSize")?
                .filter(|n| *n > 0)
                .map_or(DEFAULT_BUFFER_SIZE, |n| n.min(65_535) as usize),
            refresh_async: md.get_bool("async")?.unwrap_or(false),
            read_timeout: md
                .get_duration("readTimeout")?
                .filter(|t| !t.is_zero())
                .unwrap_or(DEFAULT_READ_TIMEOUT),
        })
    }
}

/// Why a query got no answer.
#[derive(Debug, thiserror::Error)]
enum QueryError {
    #[error("rate limited")]
    RateLimited,
    #[error("query of {0} bytes is longer than bufferSize")]
    TooLong(usize),
    #[error("malformed query: {0}")]
    Malformed(String),
    #[error("query has no question")]
    NoQuestion,
    #[error("upstream {upstream}: {error}")]
    Upstream { upstream: String, error: String },
}

struct Inner {
    router: Router,
    rate: Option<Arc<RateLimiter>>,
    upstreams: Vec<Upstream>,
    cache: cache::Cache,
    opts: DnsOptions,
}

pub struct DnsHandler {
    inner: Arc<Inner>,
}

impl DnsHandler {
    /// The upstreams are `dns`, else the system's nameservers, else
    /// GOST's `udp://127.0.0.1:53`.
    pub fn new(
        router: Router,
        rate: Option<Arc<RateLimiter>>,
        opts: DnsOptions,
    ) -> Result<Self, String> {
        let mut specs = opts.upstreams.clone();
        if specs.is_empty() {
            specs = system_nameservers();
        }
        if specs.is_empty() {
            tracing::warn!(
                nameserver = DEFAULT_NAMESERVER,
                "dns: no upstream configured or found, using the default"
            );
            specs.push(DEFAULT_NAMESERVER.into());
        }
        let upstreams = specs
            .iter()
            .map(|s| Upstream::parse(s, opts.timeout))
            .collect::<Result<_, _>>()?;
        Ok(DnsHandler {
            inner: Arc::new(Inner {
                router,
                rate,
                upstreams,
                cache: cache::Cache::default(),
                opts,
            }),
        })
    }
}

/// The nameservers of /etc/resolv.conf, as GOST takes them (IPs only).
fn system_nameservers() -> Vec<String> {
    let Ok(text) = std::fs::read_to_string("/etc/resolv.conf") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "nameserver").then_some(())?;
            let ip: IpAddr = w.next()?.parse().ok()?;
            Some(match ip {
                IpAddr::V4(v4) => format!("udp://{v4}:53"),
                IpAddr::V6(v6) => format!("udp://[{v6}]:53"),
            })
        })
        .collect()
}

/// A reply to `q` with its first question and no records (miekg's
/// SetReply, which GOST answers with).
fn reply_to(q: &Message) -> Message {
    let mut m = Message::new();
    m.set_id(q.id())
        .set_message_type(MessageType::Response)
        .set_op_code(q.op_code())
        .set_recursion_desired(q.recursion_desired())
        .set_checking_disabled(q.checking_disabled())
        .set_response_code(if q.op_code() == OpCode::Query {
            ResponseCode::NoError
        } else {
            ResponseCode::NotImp
        });
    if let Some(first) = q.queries().first() {
        m.add_query(first.clone());
    }
    m
}

fn encode(m: &Message) -> Result<Vec<u8>, QueryError> {
    m.to_vec()
        .map_err(|e| QueryError::Malformed(format!("cannot encode the answer: {e}")))
}

impl Inner {
    /// The answer to one query, or why there is none.
    async fn answer(self: &Arc<Self>, raw: &[u8], client: IpAddr) -> Result<Vec<u8>, QueryError> {
        if let Some(r) = &self.rate {
            if !r.allow(client) {
                return Err(QueryError::RateLimited);
            }
        }
        if raw.len() > self.opts.buffer_size {
            return Err(QueryError::TooLong(raw.len()));
        }
        let mut mq = Message::from_vec(raw).map_err(|e| QueryError::Malformed(e.to_string()))?;
        let Some(q) = mq.queries().first().cloned() else {
            return Err(QueryError::NoQuestion);
        };
        let name = q.name().to_ascii();
        let bare = name.trim_end_matches('.');
        let bypassed = match &self.router.bypass {
            Some(b) if q.query_class() == DNSClass::IN => {
                b.check(&self.router.service, "udp", bare).await
            }
            _ => false,
        };
        if bypassed {
            tracing::debug!(name = %esc(bare), "dns: bypass");
            return encode(&reply_to(&mq));
        }
        if let Some(m) = self.hosts_answer(&mq, bare).await {
            return encode(&m);
        }
        let single = mq.queries().len() == 1;
        let key = cache::key(&q);
        let mut stale = None;
        if single {
            if let Some(hit) = self.cache.load(&key) {
                let mut m = hit.msg;
                m.set_id(mq.id());
                if hit.fresh {
                    tracing::debug!(id = mq.id(), name = %esc(bare), "dns: cached");
                    return encode(&m);
                }
                stale = Some(m);
            }
        }
        if let Some(ip) = self.opts.client_ip {
            let prefix = if ip.is_ipv4() { 24 } else { 128 };
            mq.extensions_mut()
                .get_or_insert_with(Edns::new)
                .options_mut()
                .insert(EdnsOption::Subnet(ClientSubnet::new(ip, prefix, 0)));
        }
        let query = if self.opts.client_ip.is_some() {
            encode(&mq)?
        } else {
            raw.to_vec()
        };
        if let (Some(m), true) = (stale, self.opts.refresh_async) {
            self.cache.touch(&key);
            let this = Arc::clone(self);
            tokio::spawn(async move {
                if let Err(e) = this.exchange(&query, client, single.then_some(key)).await {
                    tracing::debug!(error = %e, "dns: async refresh failed");
                }
            });
            tracing::debug!(id = mq.id(), name = %esc(bare), "dns: cached (expired, refreshing)");
            return encode(&m);
        }
        tracing::debug!(id = mq.id(), name = %esc(bare), "dns: exchange");
        self.exchange(&query, client, single.then_some(key)).await
    }

    /// Asks the upstreams in order until one answers, and caches that.
    async fn exchange(
        &self,
        query: &[u8],
        client: IpAddr,
        key: Option<cache::Key>,
    ) -> Result<Vec<u8>, QueryError> {
        let mut last = None;
        for up in &self.upstreams {
            let reply = match up.exchange(&self.router, client, query).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(upstream = %up.shown, error = %e, "dns: upstream failed");
                    last = Some(QueryError::Upstream {
                        upstream: up.shown.clone(),
                        error: e.to_string(),
                    });
                    continue;
                }
            };
            let parsed = match Message::from_vec(&reply) {
                Ok(m) => m,
                Err(e) => {
                    last = Some(QueryError::Upstream {
                        upstream: up.shown.clone(),
                        error: format!("malformed reply: {e}"),
                    });
                    continue;
                }
            };
            if let Some(key) = key {
                self.cache.store(key, &parsed, self.opts.ttl);
            }
            return Ok(reply);
        }
        Err(last.unwrap_or(QueryError::NoQuestion))
    }

    /// GOST's host mapper answer: A or AAAA of a class IN name in `hosts`.
    async fn hosts_answer(&self, mq: &Message, bare: &str) -> Option<Message> {
        let hosts = self.router.hosts.as_ref()?;
        let q = mq.queries().first()?;
        let network = match (q.query_class(), q.query_type()) {
            (DNSClass::IN, RecordType::A) => "ip4",
            (DNSClass::IN, RecordType::AAAA) => "ip6",
            _ => return None,
        };
        let ips = hosts.lookup(network, bare).await;
        if ips.is_empty() {
            return None;
        }
        tracing::debug!(name = %esc(bare), ?ips, "dns: hosts");
        let mut m = reply_to(mq);
        for ip in ips {
            let data = match ip {
                IpAddr::V4(v4) => RData::A(A(v4)),
                IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
            };
            m.add_answer(Record::from_rdata(q.name().clone(), HOSTS_TTL, data));
        }
        Some(m)
    }

    /// One query's answer, with a failure logged (at most once per
    /// repeated kind of failure).
    async fn answer_logged(self: &Arc<Self>, raw: &[u8], ctx: &ConnContext) -> Option<Vec<u8>> {
        match self.answer(raw, ctx.peer.ip()).await {
            Ok(r) => Some(r),
            Err(e) => {
                match &e {
                    QueryError::Upstream { .. } => {
                        if let Some(n) = gost_core::repeat::check((&*ctx.service, "dns upstream")) {
                            tracing::warn!(service = %ctx.service, client = %ctx.peer, error = %esc(&e), repeated = n, "dns: no answer");
                        }
                    }
                    _ => {
                        tracing::debug!(service = %ctx.service, client = %ctx.peer, error = %esc(&e), "dns: no answer")
                    }
                }
                None
            }
        }
    }

    async fn serve_udp(
        self: Arc<Self>,
        mut conn: UdpConn,
        ctx: ConnContext,
    ) -> Result<(), HandlerError> {
        let mut in_flight = FuturesUnordered::new();
        let ttl = conn.ttl;
        let mut deadline = tokio::time::Instant::now() + ttl;
        let mut open = true;
        while open || !in_flight.is_empty() {
            tokio::select! {
                d = conn.recv(), if open && in_flight.len() < MAX_IN_FLIGHT => {
                    let Some(d) = d else {
                        open = false;
                        continue;
                    };
                    if let Some(s) = &ctx.stats {
                        s.add_input(d.len() as u64);
                    }
                    let this = &self;
                    let ctx = &ctx;
                    in_flight.push(async move { this.answer_logged(&d, ctx).await });
                    deadline = tokio::time::Instant::now() + ttl;
                }
                Some(reply) = in_flight.next(), if !in_flight.is_empty() => {
                    if let Some(r) = reply {
                        conn.send(&r).await?;
                        if let Some(s) = &ctx.stats {
                            s.add_output(r.len() as u64);
                        }
                    }
                    deadline = tokio::time::Instant::now() + ttl;
                }
                _ = tokio::time::sleep_until(deadline), if in_flight.is_empty() => return Ok(()),
            }
        }
        Ok(())
    }

    async fn serve_stream(
        self: Arc<Self>,
        mut s: Stream,
        ctx: ConnContext,
    ) -> Result<(), HandlerError> {
        loop {
            let msg =
                match tokio::time::timeout(self.opts.read_timeout, exchange::read_framed(&mut s))
                    .await
                {
                    Err(_) | Ok(Ok(None)) => return Ok(()),
                    Ok(Err(e)) => return Err(e.into()),
                    Ok(Ok(Some(m))) => m,
                };
            if let Some(st) = &ctx.stats {
                st.add_input(msg.len() as u64 + 2);
            }
            let Some(reply) = self.answer_logged(&msg, &ctx).await else {
                continue;
            };
            // A reply never exceeds a DNS message's length field.
            let Ok(len) = u16::try_from(reply.len()) else {
                continue;
            };
            let mut framed = Vec::with_capacity(reply.len() + 2);
            framed.extend(len.to_be_bytes());
            framed.extend(&reply);
            s.write_all_now(&framed).await?;
            if let Some(st) = &ctx.stats {
                st.add_output(framed.len() as u64);
            }
        }
    }
}

impl Handler for DnsHandler {
    fn handle(&self, conn: Conn, ctx: ConnContext) -> HandleFuture<'_> {
        let inner = Arc::clone(&self.inner);
        match conn {
            Conn::Udp(u) => Box::pin(inner.serve_udp(u, ctx)),
            Conn::Stream(s) => Box::pin(inner.serve_stream(s, ctx)),
        }
    }
}

#[cfg(test)]
mod tests;
