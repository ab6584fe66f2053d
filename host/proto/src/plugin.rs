//! The messages of GOST's plugin protocols (go-gost/plugin's `.proto`
//! files, and the JSON bodies of go-gost/x's `*/plugin/http.go`).
//!
//! One struct per message serves both protocols: its prost tags are the
//! protobuf field numbers of the gRPC protocol, its serde names the JSON
//! keys of the HTTP one, so the two cannot drift apart. Every GOST proto
//! is in the package `proto`, which names the gRPC methods.

use serde::{Deserialize, Serialize};

/// How a message is sent over GOST's HTTP plugin protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    /// `POST` of the JSON body (most calls).
    Post,
    /// `PUT` of the JSON body (the ingress's `SetRule`).
    Put,
    /// `GET` with [`Call::query`] added to the URL (the ingress's
    /// `GetRule`).
    Get,
}

/// One method of a GOST plugin: its request message, its answer, and where
/// each protocol sends it.
pub trait Call: prost::Message + Serialize + Sized + 'static {
    type Reply: prost::Message + Default + for<'de> Deserialize<'de> + 'static;
    /// The gRPC method, `/proto.Service/Method`.
    const GRPC_PATH: &'static str;
    const HTTP_METHOD: HttpMethod = HttpMethod::Post;

    /// The JSON body of the HTTP request.
    fn http_body(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(self)
    }

    /// The query of an [`HttpMethod::Get`] request; empty values are left
    /// out, as GOST leaves out an empty service.
    fn query(&self) -> Vec<(&'static str, &str)> {
        Vec::new()
    }

    /// The answer from the HTTP answer's body.
    fn http_reply(body: &[u8]) -> serde_json::Result<Self::Reply> {
        serde_json::from_slice(body)
    }
}

/// `auth.proto`: `Authenticator.Authenticate`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct AuthenticateRequest {
    #[prost(string, tag = "1")]
    pub username: String,
    #[prost(string, tag = "2")]
    pub password: String,
    /// The client's `ip:port`.
    #[prost(string, tag = "3")]
    pub client: String,
    #[prost(string, tag = "4")]
    pub service: String,
}

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default)]
pub struct AuthenticateReply {
    #[prost(bool, tag = "1")]
    pub ok: bool,
    #[prost(string, tag = "2")]
    pub id: String,
}

impl Call for AuthenticateRequest {
    type Reply = AuthenticateReply;
    const GRPC_PATH: &'static str = "/proto.Authenticator/Authenticate";
}

/// `admission.proto`: `Admission.Admit`. The HTTP body also carries
/// `network`, which GOST's proto has no field for.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct AdmissionRequest {
    /// The client's `ip:port`.
    #[prost(string, tag = "1")]
    pub addr: String,
    #[prost(string, tag = "2")]
    pub service: String,
}

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default)]
pub struct OkReply {
    #[prost(bool, tag = "1")]
    pub ok: bool,
}

impl Call for AdmissionRequest {
    type Reply = OkReply;
    const GRPC_PATH: &'static str = "/proto.Admission/Admit";

    fn http_body(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(&serde_json::json!({
            "service": self.service,
            "network": "tcp",
            "addr": self.addr,
        }))
    }
}

/// `bypass.proto`: `Bypass.Bypass`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct BypassRequest {
    /// The target's `host:port`.
    #[prost(string, tag = "1")]
    pub addr: String,
    /// The client id an auther gave (empty: none).
    #[prost(string, tag = "2")]
    pub client: String,
    #[prost(string, tag = "3")]
    pub network: String,
    #[prost(string, tag = "4")]
    pub host: String,
    #[prost(string, tag = "5")]
    pub path: String,
    #[prost(string, tag = "6")]
    pub service: String,
}

impl Call for BypassRequest {
    type Reply = OkReply;
    const GRPC_PATH: &'static str = "/proto.Bypass/Bypass";
}

/// `hosts.proto` (`HostMapper.Lookup`) and `resolver.proto`
/// (`Resolver.Resolve`) have the same fields.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct LookupRequest {
    #[prost(string, tag = "1")]
    pub network: String,
    #[prost(string, tag = "2")]
    pub host: String,
    #[prost(string, tag = "3")]
    pub client: String,
}

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default)]
pub struct LookupReply {
    #[prost(string, repeated, tag = "1")]
    pub ips: Vec<String>,
    #[prost(bool, tag = "2")]
    pub ok: bool,
}

impl Call for LookupRequest {
    type Reply = LookupReply;
    const GRPC_PATH: &'static str = "/proto.HostMapper/Lookup";
}

/// The resolver's request: [`LookupRequest`]'s fields, another method.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct ResolveRequest {
    #[prost(string, tag = "1")]
    pub network: String,
    #[prost(string, tag = "2")]
    pub host: String,
    #[prost(string, tag = "3")]
    pub client: String,
}

impl Call for ResolveRequest {
    type Reply = LookupReply;
    const GRPC_PATH: &'static str = "/proto.Resolver/Resolve";
}

/// `ingress.proto`: `Ingress.GetRule`; over HTTP a `GET` with `host` and
/// `service` in the query.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct GetRuleRequest {
    #[prost(string, tag = "1")]
    pub host: String,
    #[prost(string, tag = "2")]
    pub service: String,
}

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default)]
pub struct GetRuleReply {
    /// The tunnel id; empty: no rule.
    #[prost(string, tag = "1")]
    pub endpoint: String,
}

impl Call for GetRuleRequest {
    type Reply = GetRuleReply;
    const GRPC_PATH: &'static str = "/proto.Ingress/GetRule";
    const HTTP_METHOD: HttpMethod = HttpMethod::Get;

    fn query(&self) -> Vec<(&'static str, &str)> {
        [("host", self.host.as_str()), ("service", &self.service)]
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect()
    }
}

/// `ingress.proto`: `Ingress.SetRule`; over HTTP a `PUT` of the JSON body.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct SetRuleRequest {
    #[prost(string, tag = "1")]
    pub host: String,
    #[prost(string, tag = "2")]
    pub endpoint: String,
    #[prost(string, tag = "3")]
    pub service: String,
}

impl Call for SetRuleRequest {
    type Reply = OkReply;
    const GRPC_PATH: &'static str = "/proto.Ingress/SetRule";
    const HTTP_METHOD: HttpMethod = HttpMethod::Put;
}

/// Go's JSON encoding of `[]byte`: a base64 string.
fn base64_bytes<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    use base64::Engine;
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
}

/// `recorder.proto`: `Recorder.Record`. `metadata` is the JSON of the
/// record's metadata (`null` when it has none); over HTTP both fields are
/// base64 strings, as Go encodes bytes in JSON.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct RecordRequest {
    #[prost(bytes = "vec", tag = "1")]
    #[serde(serialize_with = "base64_bytes")]
    pub data: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    #[serde(serialize_with = "base64_bytes")]
    pub metadata: Vec<u8>,
}

impl Call for RecordRequest {
    type Reply = OkReply;
    const GRPC_PATH: &'static str = "/proto.Recorder/Record";
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// The bytes protoc's encoders give for GOST's messages (fields in
    /// tag order, strings length-prefixed).
    #[test]
    fn protobuf_bytes_as_gost_encodes_them() {
        let req = AuthenticateRequest {
            username: "u".into(),
            password: "p".into(),
            client: "c".into(),
            service: "s".into(),
        };
        assert_eq!(
            req.encode_to_vec(),
            b"\x0a\x01u\x12\x01p\x1a\x01c\x22\x01s".to_vec()
        );
        let req = AdmissionRequest {
            addr: "1.2.3.4:5".into(),
            service: "svc".into(),
        };
        assert_eq!(
            req.encode_to_vec(),
            b"\x0a\x091.2.3.4:5\x12\x03svc".to_vec()
        );
        let reply = LookupReply::decode(&b"\x0a\x071.2.3.4\x0a\x03::1\x10\x01"[..]).unwrap();
        assert_eq!(
            (reply.ips, reply.ok),
            (vec!["1.2.3.4".into(), "::1".into()], true)
        );
        let reply = AuthenticateReply::decode(&b"\x08\x01\x12\x02id"[..]).unwrap();
        assert_eq!((reply.ok, reply.id.as_str()), (true, "id"));
        assert!(OkReply::decode(&b"\xff\xff"[..]).is_err());
    }

    #[test]
    fn json_bodies_as_gost_sends_them() {
        let req = AdmissionRequest {
            addr: "1.2.3.4:5".into(),
            service: "svc".into(),
        };
        let v: serde_json::Value = serde_json::from_slice(&req.http_body().unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"service": "svc", "network": "tcp", "addr": "1.2.3.4:5"})
        );
        let get = GetRuleRequest {
            host: "a.example".into(),
            service: String::new(),
        };
        assert_eq!(get.query(), vec![("host", "a.example")]);
        let a = AuthenticateRequest::http_reply(br#"{"ok": true}"#).unwrap();
        assert!(a.ok && a.id.is_empty());
        assert!(LookupRequest::http_reply(br#"{"ips": 5}"#).is_err());
        assert!(LookupRequest::http_reply(b"garbage").is_err());
        let rec = RecordRequest {
            data: b"1.2.3.4".to_vec(),
            metadata: b"null".to_vec(),
        };
        let v: serde_json::Value = serde_json::from_slice(&rec.http_body().unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"data": "MS4yLjMuNA==", "metadata": "bnVsbA=="})
        );
    }
}
