//! The JSON record GOST writes per handled connection
//! (`recorder.service.handler`, x/recorder's `HandlerRecorderObject`):
//! same keys, same order, same forms (Go's duration in nanoseconds, its
//! time as RFC 3339 with nanoseconds, byte slices in base64, an
//! `http.Header` as a map of canonical names to lists of values).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct HandlerRecord {
    /// The forwarder's node that carried the connection.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node: String,
    pub service: String,
    pub network: String,
    #[serde(rename = "remote")]
    pub remote_addr: String,
    #[serde(rename = "local")]
    pub local_addr: String,
    #[serde(rename = "client")]
    pub client_addr: String,
    /// The upstream connection's local address, once dialed.
    #[serde(rename = "src")]
    pub src_addr: String,
    /// The upstream connection's remote address (the target, or the
    /// chain's first node), once dialed.
    #[serde(rename = "dst")]
    pub dst_addr: String,
    /// The target the client asked for, `host:port`.
    pub host: String,
    /// What sniffing recognised: `http`, `tls`, or empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proto: String,
    /// The client's IP from an HTTP request's forwarding headers.
    #[serde(rename = "clientIP")]
    pub client_ip: String,
    /// Who the auther said the client is.
    #[serde(rename = "clientID", skip_serializing_if = "String::is_empty")]
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<Box<HttpRecord>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub websocket: Option<Box<WebsocketRecord>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Box<TlsRecord>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<Box<DnsRecord>>,
    /// GOST's route text: `node@addr > ... > target` of the last dial.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub route: String,
    #[serde(rename = "inputBytes")]
    pub input_bytes: u64,
    #[serde(rename = "outputBytes")]
    pub output_bytes: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub err: String,
    pub sid: String,
    /// Nanoseconds, as Go writes a `time.Duration`.
    pub duration: u64,
    pub time: String,
}

/// One HTTP request and its response (GOST's `HTTPRecorderObject`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct HttpRecord {
    pub host: String,
    pub method: String,
    pub proto: String,
    pub scheme: String,
    pub uri: String,
    pub cached: bool,
    #[serde(rename = "statusCode")]
    pub status_code: u16,
    pub request: HttpMessage,
    pub response: HttpMessage,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HttpMessage {
    /// Go's `ContentLength`: -1 when unknown (chunked, or read to the
    /// end), the recorded body's length when a body was recorded.
    #[serde(rename = "contentLength")]
    pub content_length: i64,
    /// `null` when there is none, as Go writes a nil `http.Header`.
    pub header: Option<Header>,
    /// The body's first bytes (with the recorder's `http.body`), base64.
    #[serde(serialize_with = "base64_or_null")]
    pub body: Option<Vec<u8>>,
}

/// Go's `http.Header`: canonical names, values in order, names sorted
/// as `encoding/json` writes a map.
pub type Header = BTreeMap<String, Vec<String>>;

/// Adds one field to `h` under its canonical name (Go's
/// `CanonicalMIMEHeaderKey`: each dash-separated word capitalised).
pub fn add_header(h: &mut Header, name: &str, value: &str) {
    h.entry(canonical(name))
        .or_default()
        .push(value.to_string());
}

pub fn canonical(name: &str) -> String {
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        return name.to_string();
    }
    let mut up = true;
    name.chars()
        .map(|c| {
            let out = if up {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            up = c == '-';
            out
        })
        .collect()
}

/// The client's IP an HTTP request names (GOST's `GetClientIP`):
/// `CF-Connecting-IP`, else the first of `X-Forwarded-For`, else
/// `X-Real-Ip`; `None` when that is not an IP address.
pub fn forwarded_client_ip<'a>(
    field: impl Fn(&str) -> Option<&'a str>,
) -> Option<std::net::IpAddr> {
    let ip = field("cf-connecting-ip")
        .filter(|v| !v.is_empty())
        .or_else(|| {
            field("x-forwarded-for")
                .and_then(|v| v.split(',').next())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        })
        .or_else(|| field("x-real-ip"))?;
    ip.trim().parse().ok()
}

/// One WebSocket frame (GOST's `WebsocketRecorderObject`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct WebsocketRecord {
    pub from: String,
    pub fin: bool,
    pub rsv1: bool,
    pub rsv2: bool,
    pub rsv3: bool,
    pub opcode: u8,
    pub masked: bool,
    #[serde(rename = "maskKey")]
    pub mask_key: u32,
    pub length: u64,
    #[serde(serialize_with = "base64_or_null")]
    pub payload: Option<Vec<u8>>,
}

/// A TLS handshake as GOST's sniffer saw it (`TLSRecorderObject`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TlsRecord {
    #[serde(rename = "serverName")]
    pub server_name: String,
    #[serde(rename = "cipherSuite")]
    pub cipher_suite: String,
    #[serde(rename = "compressionMethod")]
    pub compression_method: u8,
    /// The ALPN protocol: the server's choice, else the client's first.
    pub proto: String,
    pub version: String,
    /// The ClientHello record, hex.
    #[serde(rename = "clientHello")]
    pub client_hello: String,
    /// The ServerHello record, hex.
    #[serde(rename = "serverHello")]
    pub server_hello: String,
}

/// A DNS exchange (GOST's `DNSRecorderObject`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DnsRecord {
    pub id: u16,
    pub name: String,
    pub class: String,
    #[serde(rename = "type")]
    pub r#type: String,
    pub question: String,
    pub answer: String,
    pub cached: bool,
}

fn base64_or_null<S: serde::Serializer>(b: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    use base64::Engine;
    match b {
        Some(b) => s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b)),
        None => s.serialize_none(),
    }
}

impl HandlerRecord {
    pub fn set_duration(&mut self, d: Duration) {
        self.duration = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// `t` as Go's `time.RFC3339Nano` in UTC: trailing zeros of the fraction
/// dropped, and the fraction left out when it is zero.
pub fn rfc3339_nano(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    let nanos = d.subsec_nanos();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// A connection's id for the record, in the form of GOST's `sid` (an
/// xid: 20 characters of base32hex).
pub fn sid() -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuv";
    let bits: u128 = rand::random();
    (0..20)
        .map(|i| DIGITS[((bits >> (i * 5)) & 31) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_go_writes_them() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 120_000_000);
        assert_eq!(rfc3339_nano(t), "2023-11-14T22:13:20.12Z");
        assert_eq!(
            rfc3339_nano(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn records_have_gosts_keys_in_gosts_order() {
        let mut r = HandlerRecord {
            service: "s".into(),
            network: "tcp".into(),
            ..Default::default()
        };
        r.set_duration(Duration::from_millis(2));
        let v = String::from_utf8(r.to_json()).unwrap();
        assert!(v.starts_with(r#"{"service":"s","network":"tcp","remote":"","local":"","client":"","src":"","dst":"","host":"","clientIP":"","inputBytes":0,"outputBytes":0,"sid":"","duration":2000000,"time":""}"#), "{v}");
        assert_eq!(sid().len(), 20);
        r.node = "n".into();
        r.proto = "http".into();
        r.client_id = "u".into();
        r.route = "a@1.2.3.4:1 > x:80".into();
        let mut h = HttpRecord {
            method: "GET".into(),
            ..Default::default()
        };
        let mut hdr = Header::new();
        add_header(&mut hdr, "x-forwarded-for", "1.2.3.4");
        add_header(&mut hdr, "USER-agent", "a");
        h.request.header = Some(hdr);
        h.response.body = Some(b"hi".to_vec());
        r.http = Some(Box::new(h));
        let v = String::from_utf8(r.to_json()).unwrap();
        assert!(v.starts_with(r#"{"node":"n","service":"s","network":"tcp","remote":"","local":"","client":"","src":"","dst":"","host":"","proto":"http","clientIP":"","clientID":"u","http":{"host":"","method":"GET","proto":"","scheme":"","uri":"","cached":false,"statusCode":0,"request":{"contentLength":0,"header":{"User-Agent":["a"],"X-Forwarded-For":["1.2.3.4"]},"body":null},"response":{"contentLength":0,"header":null,"body":"aGk="}},"route":"a@1.2.3.4:1 > x:80","inputBytes":0"#), "{v}");
    }

    #[test]
    fn the_client_ip_comes_from_forwarding_headers_in_gosts_order() {
        let h = |pairs: &'static [(&'static str, &'static str)]| {
            move |n: &str| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)
        };
        assert_eq!(
            forwarded_client_ip(h(&[
                ("x-forwarded-for", " 10.0.0.1, 10.0.0.2"),
                ("x-real-ip", "10.0.0.3")
            ])),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            forwarded_client_ip(h(&[("cf-connecting-ip", "::1"), ("x-real-ip", "10.0.0.3")])),
            Some("::1".parse().unwrap())
        );
        assert_eq!(
            forwarded_client_ip(h(&[("x-real-ip", "10.0.0.3")])),
            Some("10.0.0.3".parse().unwrap())
        );
        assert_eq!(forwarded_client_ip(h(&[("x-real-ip", "nope")])), None);
    }

    #[test]
    fn header_names_are_canonical_as_in_go() {
        assert_eq!(canonical("content-type"), "Content-Type");
        assert_eq!(canonical("X-FORWARDED-FOR"), "X-Forwarded-For");
        assert_eq!(canonical("bad name"), "bad name");
    }
}
