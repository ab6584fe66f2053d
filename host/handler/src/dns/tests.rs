use super::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use hickory_proto::op::Query;
use hickory_proto::rr::Name;
use tokio::net::UdpSocket;

/// A UDP server answering every A query with 10.0.0.1 (TTL 300), counting
/// the queries.
async fn upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
            c.fetch_add(1, Ordering::SeqCst);
            let q = Message::from_vec(&buf[..n]).unwrap();
            let mut r = reply_to(&q);
            let name = q.queries()[0].name().clone();
            r.add_answer(Record::from_rdata(name, 300, RData::A(A::new(10, 0, 0, 1))));
            sock.send_to(&r.to_vec().unwrap(), peer).await.unwrap();
        }
    });
    (addr, count)
}

fn query(name: &str, id: u16) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(id)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

fn handler(upstream: &str, md: &[(&str, &str)]) -> Arc<Inner> {
    let mut m: Metadata = md.iter().copied().collect();
    m.insert("dns", upstream);
    let opts = DnsOptions::from_metadata(&m).unwrap();
    DnsHandler::new(Router::default(), None, opts)
        .unwrap()
        .inner
}

const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

#[tokio::test]
async fn second_query_is_answered_from_the_cache_with_its_id() {
    let (addr, count) = upstream().await;
    let h = handler(&format!("udp://{addr}"), &[]);
    let r1 = Message::from_vec(&h.answer(&query("a.test.", 1), CLIENT).await.unwrap()).unwrap();
    assert_eq!(r1.id(), 1);
    let r2 = Message::from_vec(&h.answer(&query("A.test.", 2), CLIENT).await.unwrap()).unwrap();
    assert_eq!(r2.id(), 2);
    assert_eq!(r2.answers()[0].data(), &RData::A(A::new(10, 0, 0, 1)));
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn bad_queries_get_no_answer() {
    let h = handler(
        "udp://127.0.0.1:1",
        &[("bufferSize", "64"), ("timeout", "300ms")],
    );
    // A name that points at itself (a compression loop).
    let mut looped = vec![0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    looped.extend([0xC0, 12, 0, 1, 0, 1]);
    assert!(matches!(
        h.answer(&looped, CLIENT).await,
        Err(QueryError::Malformed(_))
    ));
    let mut none = query("a.test.", 3);
    none[5] = 0;
    none.truncate(12);
    assert!(matches!(
        h.answer(&none, CLIENT).await,
        Err(QueryError::NoQuestion)
    ));
    let long = query(&format!("{}.test.", "a".repeat(60)), 4);
    assert!(matches!(
        h.answer(&long, CLIENT).await,
        Err(QueryError::TooLong(_))
    ));
    assert!(matches!(
        h.answer(b"\x00", CLIENT).await,
        Err(QueryError::Malformed(_))
    ));
    assert!(matches!(
        h.answer(&query("a.test.", 5), CLIENT).await,
        Err(QueryError::Upstream { .. })
    ));
}

#[tokio::test]
async fn mutated_queries_never_panic() {
    let h = handler("udp://127.0.0.1:1", &[("timeout", "50ms")]);
    let base = query("www.example.test.", 9);
    for i in 0..base.len() {
        for v in [0u8, 0x3f, 0xc0, 0xff] {
            let mut m = base.clone();
            m[i] = v;
            let _ = h.answer(&m, CLIENT).await;
        }
    }
}

#[test]
fn options_take_gost_keys() {
    let md: Metadata = [
        ("dns", "udp://1.1.1.1:53, tcp://8.8.8.8"),
        ("ttl", "30s"),
        ("clientIP", "1.2.3.4"),
        ("async", "true"),
    ]
    .into_iter()
    .collect();
    let o = DnsOptions::from_metadata(&md).unwrap();
    assert_eq!(o.upstreams, ["udp://1.1.1.1:53", "tcp://8.8.8.8"]);
    assert_eq!(o.ttl, Duration::from_secs(30));
    assert_eq!(o.client_ip, Some("1.2.3.4".parse().unwrap()));
    assert!(o.refresh_async);
    assert_eq!(o.timeout, DEFAULT_TIMEOUT);
    let bad: Metadata = [("clientIP", "nope")].into_iter().collect();
    assert!(DnsOptions::from_metadata(&bad).is_err());
}
