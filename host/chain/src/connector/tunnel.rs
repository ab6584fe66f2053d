//! GOST's tunnel connector (`connector/tunnel`): the relay protocol with
//! a tunnel id. A BIND registers this client as a connector of the tunnel
//! on the node's `tunnel` handler: the node answers with the address its
//! visitors use and the connector id, then opens one smux stream per
//! visitor, each starting with a relay response that names the visitor
//! and the host it asked for. A CONNECT visits a tunnel: the node picks
//! one of the tunnel's connectors and the stream is joined to it.
//!
//! The session is smux version 2 unless `mux.version` says otherwise, as
//! GOST's tunnel connector has it.

use super::bind::{BindNetwork, Bound, PeerHeader};
use super::udp_tun::UdpTunnel;
use super::upstream::Upstream;
use super::{write_all, ConnectError, ConnectorBuildError, ConnectorKind, Connectors, Credentials};
use gost_core::metadata::Metadata;
use gost_proto::relay::{
    CMD_BIND, CMD_CONNECT, FEATURE_ADDR, FEATURE_TUNNEL, FLAG_UDP, NETWORK_UDP,
};
use gost_proto::tunnel::{encode, Feature, TunnelId};
use gost_transport::BoxFuture;

const NAME: &str = "tunnel";

#[derive(Debug)]
pub struct TunnelConnector {
    auth: Option<Credentials>,
    /// With the weight in its last byte.
    tunnel: TunnelId,
    #[cfg(feature = "mux")]
    mux: gost_transport::mux::MuxConfig,
}

impl TunnelConnector {
    /// `tunnel.id` (or `tunnelID`): without one GOST makes a random id,
    /// which only a BIND can use (nobody else knows it); `tunnel.weight`
    /// 1 to 255.
    pub fn new(md: &Metadata, auth: Option<Credentials>) -> Result<Self, ConnectorBuildError> {
        let id = match md.get_string("tunnelID")? {
            Some(s) if !s.is_empty() => Some(s),
            _ => md.get_string("tunnel.id")?,
        };
        let tunnel = match id.filter(|s| !s.is_empty()) {
            Some(s) => gost_proto::tunnel::parse_uuid(&s)
                .map(|u| {
                    let mut id = [0u8; 20];
                    id[..16].copy_from_slice(&u);
                    TunnelId(id)
                })
                .filter(|t| !t.is_zero())
                .ok_or_else(|| {
                    ConnectorBuildError::Invalid(format!(
                        "tunnel connector: tunnel.id {:?} is not a UUID",
                        gost_core::escape::esc(&s)
                    ))
                })?,
            None => TunnelId(random_id()),
        };
        let tunnel = match md.get_int("tunnel.weight")? {
            None | Some(0) => tunnel,
            Some(w @ 1..=255) => tunnel.with_weight(w as u8),
            Some(w) => {
                return Err(ConnectorBuildError::Invalid(format!(
                    "tunnel connector: tunnel.weight {w}: 1 to 255"
                )))
            }
        };
        Ok(TunnelConnector {
            auth,
            tunnel,
            #[cfg(feature = "mux")]
            mux: gost_transport::mux::MuxConfig::from_metadata(md, 2)
                .map_err(|e| ConnectorBuildError::Invalid(format!("tunnel connector: {e}")))?,
        })
    }

    fn auth_feature(&self) -> Option<Feature> {
        self.auth.as_ref().map(|a| Feature::UserAuth {
            user: a.username.clone(),
            pass: a.password.clone(),
        })
    }

    /// GOST's CONNECT: [network], [auth], source, target, tunnel id.
    fn connect_request(&self, src: &str, addr: &str, udp: bool) -> Result<Vec<u8>, ConnectError> {
        let mut features = Vec::new();
        if udp {
            features.push(Feature::Network(NETWORK_UDP));
        }
        features.extend(self.auth_feature());
        features.push(Feature::Addr(src.to_string()));
        features.push(Feature::Addr(addr.to_string()));
        features.push(Feature::Tunnel(self.tunnel.0));
        let cmd = if udp {
            CMD_CONNECT | FLAG_UDP
        } else {
            CMD_CONNECT
        };
        encode(cmd, &features).map_err(refused)
    }

    /// GOST's BIND: [network], [auth], this side's address, the address
    /// asked for (`0.0.0.0` for an empty host), tunnel id.
    fn bind_request(
        &self,
        local: &str,
        addr: &str,
        network: BindNetwork,
    ) -> Result<Vec<u8>, ConnectError> {
        let mut features = Vec::new();
        let udp = network == BindNetwork::Udp;
        if udp {
            features.push(Feature::Network(NETWORK_UDP));
        }
        features.extend(self.auth_feature());
        features.push(Feature::Addr(local.to_string()));
        features.push(Feature::Addr(super::bind::wire_addr(addr)));
        features.push(Feature::Tunnel(self.tunnel.0));
        let cmd = if udp { CMD_BIND | FLAG_UDP } else { CMD_BIND };
        encode(cmd, &features).map_err(refused)
    }

    async fn connect(&self, up: &mut Upstream, addr: &str) -> Result<(), ConnectError> {
        let src = up.local_addr().map(|a| a.to_string()).unwrap_or_default();
        write_all(NAME, up.writer(), &self.connect_request(&src, addr, false)?).await?;
        // The node answers once it has a stream to a connector, before
        // either side speaks, so the answer is read here (as GOST does).
        up.owe_response();
        up.settle().await
    }

    async fn udp(&self, mut up: Upstream, target: Option<&str>) -> Result<UdpTunnel, ConnectError> {
        let target = target.unwrap_or("0.0.0.0:0");
        let src = up.local_addr().map(|a| a.to_string()).unwrap_or_default();
        write_all(
            NAME,
            up.writer(),
            &self.connect_request(&src, target, true)?,
        )
        .await?;
        up.owe_response();
        up.settle().await?;
        Ok(UdpTunnel::relay(up))
    }

    #[cfg(feature = "mux")]
    async fn bind(
        &self,
        mut up: Upstream,
        network: BindNetwork,
        addr: &str,
    ) -> Result<Bound, ConnectError> {
        let local = up.local_addr().map(|a| a.to_string()).unwrap_or_default();
        write_all(
            NAME,
            up.writer(),
            &self.bind_request(&local, addr, network)?,
        )
        .await?;
        let stream = up.settled().await?;
        let mut head = [0u8; 4];
        super::read_exact(NAME, stream, &mut head).await?;
        let mut features = vec![0u8; u16::from_be_bytes([head[2], head[3]]) as usize];
        super::read_exact(NAME, stream, &mut features).await?;
        let (bound, connector) = parse_bind_response(head, &features)?;
        tracing::info!(tunnel = %self.tunnel, connector = %connector, weight = self.tunnel.weight(), endpoint = %gost_core::escape::esc(&bound), "tunnel connector: registered");
        Ok(Bound {
            addr: bound,
            stream: up.into_parts().0,
            header: PeerHeader::Relay,
            mux: Some(self.mux.clone()),
            #[cfg(feature = "ssh")]
            forwarded: None,
        })
    }
}

/// 16 random bytes in UUID version 4 form.
fn random_id() -> [u8; 20] {
    let mut id = [0u8; 20];
    let r: [u8; 16] = rand::random();
    id[..16].copy_from_slice(&r);
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

fn refused(msg: String) -> ConnectError {
    ConnectError::Refused {
        connector: NAME,
        reply: msg,
    }
}

/// A BIND answer: the endpoint (visitors' address) and the connector id.
fn parse_bind_response(
    head: [u8; 4],
    features: &[u8],
) -> Result<(String, gost_proto::tunnel::ConnectorId), ConnectError> {
    let mut bound = String::new();
    let mut connector = gost_proto::tunnel::ConnectorId::default();
    for (kind, data) in super::relay::bind_answer(NAME, "create tunnel", head, features)? {
        match kind {
            FEATURE_ADDR => {
                bound =
                    gost_proto::relay::parse_addr(data).map_err(|msg| ConnectError::BadReply {
                        connector: NAME,
                        msg,
                    })?
            }
            FEATURE_TUNNEL if data.len() >= 16 => {
                let n = data.len().min(20);
                connector.0[..n].copy_from_slice(&data[..n]);
            }
            _ => {}
        }
    }
    Ok((bound, connector))
}

impl super::Connector for TunnelConnector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn connect<'a>(
        &'a self,
        up: &'a mut Upstream,
        addr: &'a str,
    ) -> BoxFuture<'a, Result<(), ConnectError>> {
        Box::pin(TunnelConnector::connect(self, up, addr))
    }

    fn udp_tunnel<'a>(
        &'a self,
        up: Upstream,
        target: Option<&'a str>,
        _node: &'a str,
    ) -> BoxFuture<'a, Result<UdpTunnel, ConnectError>> {
        Box::pin(self.udp(up, target))
    }

    #[cfg(feature = "mux")]
    fn bind<'a>(
        &'a self,
        up: Upstream,
        network: BindNetwork,
        addr: &'a str,
    ) -> BoxFuture<'a, Result<Bound, ConnectError>> {
        Box::pin(TunnelConnector::bind(self, up, network, addr))
    }
}

pub fn register(r: &mut Connectors) {
    r.add(ConnectorKind {
        names: &["tunnel"],
        udp: true,
        build: |md, c| Ok(Box::new(TunnelConnector::new(md, c.auth)?)),
        summary: "GOST's tunnel protocol: registers with a tunnel handler (rtcp/rudp services) or visits a tunnel by `tunnel.id`",
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f8e5b56-6a8b-4a4f-9a35-2a2bbc3f0f01";

    fn connector(extra: &[(&str, serde_json::Value)]) -> TunnelConnector {
        let mut md = Metadata::new();
        md.insert("tunnel.id", serde_json::json!(ID));
        for (k, v) in extra {
            md.insert(*k, v.clone());
        }
        TunnelConnector::new(
            &md,
            Some(Credentials {
                username: "u".into(),
                password: "p".into(),
            }),
        )
        .unwrap()
    }

    /// GOST's `initTunnel` for `rtcp://:8080` with weight 3: auth, local
    /// address, `0.0.0.0:8080`, tunnel id with the weight.
    #[test]
    fn a_bind_is_gosts_request() {
        let c = connector(&[("tunnel.weight", serde_json::json!(3))]);
        let req = c
            .bind_request("127.0.0.1:5000", ":8080", BindNetwork::Tcp)
            .unwrap();
        let mut want = vec![1, 2, 0, 50, 1, 0, 4, 1, b'u', 1, b'p'];
        want.extend_from_slice(&[2, 0, 7, 1, 127, 0, 0, 1, 0x13, 0x88]);
        want.extend_from_slice(&[2, 0, 7, 1, 0, 0, 0, 0, 0x1f, 0x90]);
        want.extend_from_slice(&[3, 0, 20]);
        want.extend_from_slice(&TunnelId::parse(ID).unwrap().with_weight(3).0);
        assert_eq!(req, want);
        let udp = c
            .bind_request("127.0.0.1:5000", ":53", BindNetwork::Udp)
            .unwrap();
        assert_eq!(&udp[..2], &[1, 0x82]);
        assert_eq!(&udp[4..9], &[4, 0, 2, 0, 1]);
    }

    #[test]
    fn bad_ids_and_weights_are_refused() {
        let mut md = Metadata::new();
        md.insert("tunnel.id", serde_json::json!("nope"));
        assert!(TunnelConnector::new(&md, None).is_err());
        let mut md = Metadata::new();
        md.insert("tunnel.weight", serde_json::json!(300));
        assert!(TunnelConnector::new(&md, None).is_err());
        let c = TunnelConnector::new(&Metadata::new(), None).unwrap();
        assert!(!c.tunnel.is_zero());
    }

    #[test]
    fn bind_answers() {
        let mut f = vec![2, 0, 7, 3, 3, b'a', b'b', b'c', 0x1f, 0x90];
        f.extend_from_slice(&[3, 0, 20]);
        f.extend_from_slice(&[9; 16]);
        f.extend_from_slice(&[0, 0, 0, 5]);
        let (addr, cid) = parse_bind_response([1, 0, 0, f.len() as u8], &f).unwrap();
        assert_eq!(addr, "abc:8080");
        assert_eq!(cid.weight(), 5);
        let err = parse_bind_response([1, 2, 0, 0], &[]).unwrap_err();
        assert!(err.to_string().contains("unauthorized"), "{err}");
    }
}
