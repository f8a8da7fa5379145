//! Certificates made for one test: a CA, a server certificate for
//! `localhost` and `127.0.0.1` signed by it, a client certificate for
//! mutual TLS, and a second CA that signed nothing here (to show what an
//! unknown authority looks like). Written as PEM files into a temporary
//! directory that lives as long as the value.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use tempfile::TempDir;

/// The PEM files of one test's certificates.
pub struct TestCerts {
    dir: TempDir,
}

impl TestCerts {
    /// Makes them. `server_names` go into the server certificate (with
    /// `127.0.0.1`); give a name other than `localhost` to make a
    /// certificate that does not match the host a client dials.
    ///
    /// # Panics
    /// When the certificates cannot be made or written (a test set-up
    /// failure).
    pub fn new(server_names: &[&str]) -> TestCerts {
        let dir = tempfile::Builder::new()
            .prefix("holdfast-tls-")
            .tempdir()
            .expect("a directory for certificates");
        let ca = make_ca("holdfast test CA");
        let server_key = KeyPair::generate().expect("a server key");
        let mut server = CertificateParams::new(
            server_names
                .iter()
                .map(|name| (*name).to_owned())
                .collect::<Vec<_>>(),
        )
        .expect("server certificate parameters");
        server
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        server
            .distinguished_name
            .push(DnType::CommonName, "holdfast test server");
        let server = server
            .signed_by(&server_key, &ca)
            .expect("the server certificate");
        let client_key = KeyPair::generate().expect("a client key");
        let mut client =
            CertificateParams::new(Vec::<String>::new()).expect("client certificate parameters");
        client
            .distinguished_name
            .push(DnType::CommonName, "holdfast test client");
        let client = client
            .signed_by(&client_key, &ca)
            .expect("the client certificate");
        let other = make_ca("another CA");
        let write = |name: &str, text: String| {
            std::fs::write(dir.path().join(name), text)
                .unwrap_or_else(|e| panic!("writing {name}: {e}"));
        };
        write("ca.pem", ca.pem());
        write("other-ca.pem", other.pem());
        write("server.pem", server.pem());
        write("server-key.pem", server_key.serialize_pem());
        write("client.pem", client.pem());
        write("client-key.pem", client_key.serialize_pem());
        TestCerts { dir }
    }

    /// Certificates whose server certificate is for `localhost`.
    pub fn localhost() -> TestCerts {
        Self::new(&["localhost"])
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA that signed the server's and the client's certificates.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// A CA that signed nothing here.
    pub fn other_ca(&self) -> PathBuf {
        self.path("other-ca.pem")
    }

    /// The server's certificate.
    pub fn server_cert(&self) -> PathBuf {
        self.path("server.pem")
    }

    /// The server's key.
    pub fn server_key(&self) -> PathBuf {
        self.path("server-key.pem")
    }

    /// The client's certificate.
    pub fn client_cert(&self) -> PathBuf {
        self.path("client.pem")
    }

    /// The client's key.
    pub fn client_key(&self) -> PathBuf {
        self.path("client-key.pem")
    }

    /// The directory of the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn make_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a CA key"))
        .expect("the CA certificate")
}
