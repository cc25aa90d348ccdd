//! The registry client's TLS settings against a tiny HTTPS stub (rustls) that requires a client certificate.
//!
//! Certificates in `fixtures/registry_tls/` (EC P-256, valid 100 years, made with openssl): `ca.pem` signs
//! `server.pem` (SAN IP:127.0.0.1, DNS:localhost) and `client.pem` (clientAuth).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use weir_connectors::registry::{RegistryClient, RegistryClientConfig, RegistryClientError, TlsSettings};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/registry_tls").join(name)
}

/// Serves `connections` TLS connections, answering `["tls-value"]` to one request each; returns per connection
/// whether the handshake succeeded and the client presented a certificate.
fn https_stub(connections: usize) -> (String, JoinHandle<Vec<Result<bool, String>>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(fixture("ca.pem")).unwrap()).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_file(fixture("server.pem")).unwrap()],
            PrivateKeyDer::from_pem_file(fixture("server.key")).unwrap(),
        )
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let thread = std::thread::spawn(move || {
        (0..connections)
            .map(|_| {
                let (socket, _) = listener.accept().unwrap();
                socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let connection = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut stream = rustls::StreamOwned::new(connection, socket);
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer) {
                        Ok(0) => return Err("closed before a request".to_string()),
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                        Err(e) => return Err(e.to_string()),
                    }
                }
                let body = r#"["tls-value"]"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(answer.as_bytes()).map_err(|e| e.to_string())?;
                stream.conn.send_close_notify();
                let _ = stream.flush();
                Ok(stream.conn.peer_certificates().is_some_and(|c| !c.is_empty()))
            })
            .collect()
    });
    (url, thread)
}

fn client(url: &str, tls: TlsSettings) -> RegistryClient {
    let config = RegistryClientConfig::new([url]).tls(tls).timeouts(Duration::from_secs(5), Duration::from_secs(5));
    RegistryClient::new(config).unwrap()
}

#[test]
fn ca_file_and_client_certificate() {
    let (url, server) = https_stub(3);
    // Trusting our CA and presenting the client certificate: the request goes through.
    let mutual = TlsSettings {
        ca_file: Some(fixture("ca.pem")),
        client_cert_file: Some(fixture("client.pem")),
        client_key_file: Some(fixture("client.key")),
    };
    assert_eq!(client(&url, mutual).subjects().unwrap(), vec!["tls-value".to_string()]);

    // The built-in roots do not know our CA: the client refuses the server.
    let error = client(&url, TlsSettings::default()).subjects().unwrap_err();
    assert!(matches!(error, RegistryClientError::Unreachable { .. }), "{error}");
    assert!(error.to_string().contains("UnknownIssuer") || error.to_string().contains("issuer"), "{error}");

    // The right CA but no client certificate: the server refuses the client.
    let one_way = TlsSettings { ca_file: Some(fixture("ca.pem")), ..Default::default() };
    assert!(client(&url, one_way).subjects().is_err());

    let seen = server.join().unwrap();
    assert_eq!(seen[0], Ok(true), "the client certificate was presented");
    assert!(seen[1].is_err(), "{:?}", seen[1]);
    assert!(seen[2].is_err(), "{:?}", seen[2]);
}

#[test]
fn unreadable_tls_files_fail_when_the_client_is_built() {
    let not_pem = TlsSettings {
        ca_file: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")),
        ..Default::default()
    };
    let error = RegistryClient::new(RegistryClientConfig::new(["https://127.0.0.1:1"]).tls(not_pem)).unwrap_err();
    assert!(error.to_string().contains("no certificate in it"), "{error}");
    let missing_key = TlsSettings {
        ca_file: Some(fixture("ca.pem")),
        client_cert_file: Some(fixture("client.pem")),
        client_key_file: Some(fixture("missing.key")),
    };
    let error = RegistryClient::new(RegistryClientConfig::new(["https://127.0.0.1:1"]).tls(missing_key)).unwrap_err();
    assert!(error.to_string().contains("missing.key"), "{error}");
}
