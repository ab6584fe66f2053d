//! Certificates for the TLS tests, made at test time with the openssl CLI
//! (never committed): an ECDSA P-256 CA with a server and a client
//! certificate, an unrelated CA with its own client, and an expired server
//! certificate from the first CA.

use std::path::Path;
use std::process::Command;

use crate::TempDir;

/// Paths of the generated PEM files; the directory goes with the value.
pub struct Pki {
    pub dir: TempDir,
    pub ca: String,
    pub ca_key: String,
    /// SANs DNS:localhost, IP:127.0.0.1, IP:::1; serverAuth.
    pub server: String,
    pub server_key: String,
    /// clientAuth, signed by `ca`.
    pub client: String,
    pub client_key: String,
    pub other_ca: String,
    /// clientAuth, signed by `other_ca`.
    pub other_client: String,
    pub other_client_key: String,
    /// The server's names and key, valid 2020-01-01 to 2021-01-01 only.
    pub expired: String,
    pub expired_key: String,
}

const CONFIG: &str = "\
[req]
distinguished_name = dn
[dn]
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1,IP:::1
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
[ca]
default_ca = signer
[signer]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
";

/// Runs `openssl args` in `dir`; panics with its stderr when it fails.
pub fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("/usr/bin/openssl")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run /usr/bin/openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Pki {
    pub fn generate(tag: &str) -> Pki {
        let dir = TempDir::new(tag);
        let d = dir.0.clone();
        dir.write("openssl.cnf", CONFIG);
        dir.write("index.txt", "");
        dir.write("serial", "1000\n");
        // File names are relative to the directory, and no word has spaces.
        let run = |cmd: String| openssl(&d, &cmd.split_whitespace().collect::<Vec<_>>());
        let key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
        for (ca, cn) in [("ca", "gost-e2e-CA"), ("other-ca", "gost-e2e-other-CA")] {
            run(format!(
                "req -x509 -config openssl.cnf -extensions ca_ext -days 3650 -subj /CN={cn} \
                 {key} -keyout {ca}-key.pem -out {ca}.pem"
            ));
        }
        // A key and CSR `name`, signed by `ca` with the extensions `ext`.
        for (name, ca, ext, serial) in [
            ("server", "ca", "server_ext", 2),
            ("client", "ca", "client_ext", 3),
            ("other-client", "other-ca", "client_ext", 4),
        ] {
            run(format!(
                "req -new -config openssl.cnf -subj /CN=localhost {key} \
                 -keyout {name}-key.pem -out {name}.csr"
            ));
            run(format!(
                "x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}-key.pem -set_serial {serial} \
                 -days 365 -extfile openssl.cnf -extensions {ext} -out {name}.pem"
            ));
        }
        // `x509 -req` cannot back-date in OpenSSL 3.0; `ca` can.
        run(
            "ca -config openssl.cnf -batch -notext -in server.csr -cert ca.pem \
             -keyfile ca-key.pem -extfile openssl.cnf -extensions server_ext \
             -startdate 20200101000000Z -enddate 20210101000000Z -out expired.pem"
                .into(),
        );
        let p = |n: &str| dir.path(n);
        Pki {
            ca: p("ca.pem"),
            ca_key: p("ca-key.pem"),
            server: p("server.pem"),
            server_key: p("server-key.pem"),
            client: p("client.pem"),
            client_key: p("client-key.pem"),
            other_ca: p("other-ca.pem"),
            other_client: p("other-client.pem"),
            other_client_key: p("other-client-key.pem"),
            expired: p("expired.pem"),
            expired_key: p("server-key.pem"),
            dir,
        }
    }
}
