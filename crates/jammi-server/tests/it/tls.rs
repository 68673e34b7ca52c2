//! TLS on all three listeners with a certificate made by `openssl` for the test: curl over
//! HTTPS, sqlx with `sslmode=verify-ca`, an `openssl s_client` handshake with the Flight SQL
//! listener (ALPN h2); clients that do not speak TLS are refused; and the transport rule for
//! non-loopback addresses.

use std::path::Path;
use std::process::Command;

use jammi_db::TenantId;
use jammi_server::{Limits, ServeOptions, Server, TlsFiles};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions, Row};

use crate::support::*;

/// A test CA and a server certificate it signed for 127.0.0.1 / localhost; returns the
/// server's files and the CA certificate clients trust.
fn certificate(dir: &Path) -> (TlsFiles, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl must be installed to make the test certificate");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[&["req", "-x509"][..], &ec, &["-days", "2", "-subj", "/CN=jammi test CA", "-keyout", "ca.key", "-out", "ca.pem"]].concat());
    run(&[&["req"][..], &ec, &["-subj", "/CN=localhost", "-keyout", "key.pem", "-out", "server.csr"]].concat());
    std::fs::write(dir.join("server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    run(&["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "cert.pem"]);
    (TlsFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem") }, dir.join("ca.pem"))
}

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl").args(["-sS", "--max-time", "10"]).args(args).output().expect("curl must be installed");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_listener_speaks_tls() {
    let (session, dir) = session().await;
    let certs = tempfile::tempdir().unwrap();
    let (files, ca) = certificate(certs.path());
    let tenant = TenantId::random();
    tenant_people(&session, dir.path(), tenant, TenantId::random(), 3).await;
    let (_, token) = jammi_server::auth::create_token(&session, Some(tenant), "t").await.unwrap();
    let loopback = "127.0.0.1:0".parse().unwrap();
    let options = ServeOptions { http: Some(loopback), pg: Some(loopback), flight: Some(loopback), limits: Limits::default(), tls: Some(files.clone()), ..ServeOptions::default() };
    let server = Server::start(session.clone(), options).await.unwrap();
    let addrs = server.addresses();
    let cert = ca.display().to_string();

    // HTTP: HTTPS with the certificate works; clear text does not.
    let http = addrs.http.unwrap();
    let (ok, body) = curl(&["--cacert", &cert, &format!("https://localhost:{}/healthz", http.port())]);
    assert!(ok && body.trim() == "ok", "{body}");
    let (ok, body) = curl(&[
        "--cacert",
        &cert,
        "-H",
        &format!("authorization: Bearer {token}"),
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"sql": "SELECT count(*) AS n FROM files.public.people"}"#,
        &format!("https://127.0.0.1:{}/v1/sql", http.port()),
    ]);
    assert!(ok && body.contains("\"n\":3"), "{body}");
    let (ok, body) = curl(&[&format!("http://127.0.0.1:{}/healthz", http.port())]);
    assert!(!ok || !body.contains("ok\n"), "clear text must not be answered: {body}");
    let (ok, _) = curl(&[&format!("https://localhost:{}/healthz", http.port())]);
    assert!(!ok, "an unknown certificate is not trusted by default");

    // Postgres: the token travels only inside TLS, and the certificate is verified.
    let pg = addrs.pg.unwrap();
    let verified = PgConnectOptions::new()
        .host("127.0.0.1")
        .port(pg.port())
        .username("jammi")
        .password(&token)
        .database("jammi")
        .ssl_mode(PgSslMode::VerifyCa)
        .ssl_root_cert(&ca);
    let mut conn = verified.connect().await.expect("a TLS connection with a verified certificate");
    let row = sqlx::query("SELECT count(*) AS n FROM files.public.people").fetch_one(&mut conn).await.unwrap();
    assert_eq!(row.get::<i64, _>("n"), 3);
    let clear = PgConnectOptions::new().host("127.0.0.1").port(pg.port()).username("jammi").password(&token).database("jammi").ssl_mode(PgSslMode::Disable);
    let refused = clear.connect().await.expect_err("a connection without TLS must be refused");
    assert!(refused.to_string().contains("requires TLS"), "{refused}");

    // Flight SQL: a TLS handshake offering h2 succeeds and verifies against the certificate.
    let flight = addrs.flight.unwrap();
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{}", flight.port()), "-CAfile", &cert, "-alpn", "h2", "-verify_return_error", "-brief"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Verification: OK") && text.contains("CN = localhost"), "{text}");
    // ... and a clear-text gRPC (HTTP/2) client gets nowhere.
    let (ok, body) = curl(&["--http2-prior-knowledge", &format!("http://127.0.0.1:{}/", flight.port())]);
    assert!(!ok, "clear-text HTTP/2 must not be answered: {body}");

    server.shutdown();
    server.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_loopback_addresses_need_tls_or_an_explicit_waiver() {
    let (session, dir) = session().await;
    jammi_server::auth::create_token(&session, None, "t").await.unwrap();
    let any = "0.0.0.0:0".parse().unwrap();
    for options in [
        ServeOptions { pg: Some(any), ..ServeOptions::default() },
        ServeOptions { flight: Some(any), ..ServeOptions::default() },
    ] {
        let err = Server::start(session.clone(), options).await.unwrap_err().to_string();
        assert!(err.contains("without TLS") && err.contains("--allow-insecure-transport"), "{err}");
    }
    let certs = tempfile::tempdir().unwrap();
    let (files, _) = certificate(certs.path());
    let server = Server::start(session.clone(), ServeOptions { pg: Some(any), tls: Some(files.clone()), ..ServeOptions::default() }).await.unwrap();
    server.shutdown();
    server.wait().await;
    // A key that does not belong to the certificate, or a missing file, is named.
    let other = tempfile::tempdir().unwrap();
    let (stranger, _) = certificate(other.path());
    let err = Server::start(session.clone(), ServeOptions { pg: Some(any), tls: Some(TlsFiles { cert: files.cert.clone(), key: stranger.key.clone() }), ..ServeOptions::default() })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not fit") || err.contains("key"), "{err}");
    let err = Server::start(session, ServeOptions { pg: Some(any), tls: Some(TlsFiles { cert: dir.path().join("missing.pem"), key: files.key }), ..ServeOptions::default() })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.pem"), "{err}");
}
