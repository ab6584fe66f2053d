//! The JSON record GOST writes per handled connection
//! (`recorder.service.handler`, x/recorder's `HandlerRecorderObject`):
//! same keys, same order, same forms (Go's duration in nanoseconds, its
//! time as RFC 3339 with nanoseconds).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct HandlerRecord {
    pub service: String,
    pub network: String,
    #[serde(rename = "remote")]
    pub remote_addr: String,
    #[serde(rename = "local")]
    pub local_addr: String,
    #[serde(rename = "client")]
    pub client_addr: String,
    #[serde(rename = "src")]
    pub src_addr: String,
    #[serde(rename = "dst")]
    pub dst_addr: String,
    pub host: String,
    #[serde(rename = "clientIP")]
    pub client_ip: String,
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
    }
}
