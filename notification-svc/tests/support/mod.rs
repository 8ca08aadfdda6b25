//! Fakes of the outside world for notification tests: a real SMTP server
//! (Python's aiosmtpd writing a maildir), an HTTP recorder standing in for
//! the SMS provider and push services, and a browser's push keys that
//! decrypt what arrives.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Polls `check` until it returns Some, or panics after `secs` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A real SMTP server: `python3 -m aiosmtpd` storing what it receives in a
/// maildir. Needs the `aiosmtpd` package (`pip install aiosmtpd`; CI
/// installs it).
pub struct SmtpServer {
    child: std::process::Child,
    pub port: u16,
    maildir: PathBuf,
}

impl SmtpServer {
    pub async fn start() -> SmtpServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let maildir = std::env::temp_dir().join(format!("shopmesh-mail-{}", uuid::Uuid::new_v4()));
        let mut child = std::process::Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs (the SMTP tests start aiosmtpd with it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    use std::io::Read as _;
                    let _ = stderr.read_to_string(&mut err);
                }
                panic!(
                    "aiosmtpd exited ({status}); is it installed? `pip install aiosmtpd`\n{err}"
                );
            }
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        SmtpServer {
            child,
            port,
            maildir,
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, raw.
    pub fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .collect()
    }

    /// Waits until `n` messages arrived.
    pub async fn wait_for_messages(&self, n: usize) -> Vec<String> {
        wait_for(&format!("{n} email(s)"), 20, || async {
            let m = self.messages();
            (m.len() >= n).then_some(m)
        })
        .await
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.maildir);
    }
}

/// A received message with quoted-printable soft line breaks undone.
pub fn unfolded(raw: &str) -> String {
    raw.replace("=\r\n", "").replace("=\n", "")
}

/// A request as the fake received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The body as a form (`application/x-www-form-urlencoded`).
    pub fn form(&self) -> std::collections::HashMap<String, String> {
        String::from_utf8_lossy(&self.body)
            .split('&')
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                Some((decode_form(k), decode_form(v)))
            })
            .collect()
    }
}

fn decode_form(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// An HTTP server recording every request and answering with scripted
/// statuses (then `default_status`).
#[derive(Clone)]
pub struct Recorder {
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    pub async fn start(script: &[(u16, &str)], default_status: u16) -> Recorder {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let script: Arc<Mutex<VecDeque<(u16, String)>>> = Arc::new(Mutex::new(
            script.iter().map(|(s, b)| (*s, b.to_string())).collect(),
        ));
        let sink = seen.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                let script = script.clone();
                async move {
                    sink.lock().unwrap().push(Seen {
                        path: uri.path().to_string(),
                        headers,
                        body: body.to_vec(),
                    });
                    let (status, body) = script
                        .lock()
                        .unwrap()
                        .pop_front()
                        .unwrap_or((default_status, r#"{"sid":"SM1"}"#.to_string()));
                    (axum::http::StatusCode::from_u16(status).unwrap(), body)
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Recorder { url, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub async fn wait_for_requests(&self, n: usize) -> Vec<Seen> {
        wait_for(&format!("{n} request(s) at {}", self.url), 20, || async {
            let seen = self.seen();
            (seen.len() >= n).then_some(seen)
        })
        .await
    }
}

pub fn b64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .expect("base64url")
}

/// A browser's push subscription keys; decrypts one message (RFC 8291),
/// written here from the RFC independently of the service's code.
pub struct Browser {
    private: Option<ring::agreement::EphemeralPrivateKey>,
    pub p256dh: String,
    pub auth: String,
    auth_secret: [u8; 16],
}

impl Browser {
    pub fn new() -> Browser {
        use ring::rand::SecureRandom as _;
        let rng = ring::rand::SystemRandom::new();
        let private =
            ring::agreement::EphemeralPrivateKey::generate(&ring::agreement::ECDH_P256, &rng)
                .unwrap();
        let public = private.compute_public_key().unwrap();
        let mut auth_secret = [0u8; 16];
        rng.fill(&mut auth_secret).unwrap();
        Browser {
            p256dh: URL_SAFE_NO_PAD.encode(public.as_ref()),
            auth: URL_SAFE_NO_PAD.encode(auth_secret),
            private: Some(private),
            auth_secret,
        }
    }

    /// Decrypts an `aes128gcm` body (one record).
    pub fn decrypt(&mut self, body: &[u8]) -> Vec<u8> {
        use ring::{aead, agreement, hkdf};
        struct L(usize);
        impl hkdf::KeyType for L {
            fn len(&self) -> usize {
                self.0
            }
        }
        fn expand(salt: &[u8], ikm: &[u8], info: &[&[u8]], n: usize) -> Vec<u8> {
            let mut out = vec![0; n];
            hkdf::Salt::new(hkdf::HKDF_SHA256, salt)
                .extract(ikm)
                .expand(info, L(n))
                .unwrap()
                .fill(&mut out)
                .unwrap();
            out
        }
        let salt = &body[..16];
        let record_size = u32::from_be_bytes(body[16..20].try_into().unwrap());
        assert!(record_size >= 18, "record size {record_size}");
        let key_len = body[20] as usize;
        assert_eq!(key_len, 65, "sender key is an uncompressed P-256 point");
        let sender = &body[21..21 + key_len];
        let ciphertext = &body[21 + key_len..];
        let ua_public = b64(&self.p256dh);
        let secret = agreement::agree_ephemeral(
            self.private.take().expect("one message per browser key"),
            &agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, sender),
            |s| s.to_vec(),
        )
        .unwrap();
        let ikm = expand(
            &self.auth_secret,
            &secret,
            &[b"WebPush: info\0", &ua_public, sender],
            32,
        );
        let cek = expand(salt, &ikm, &[b"Content-Encoding: aes128gcm\0"], 16);
        let nonce = expand(salt, &ikm, &[b"Content-Encoding: nonce\0"], 12);
        let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &cek).unwrap());
        let mut buf = ciphertext.to_vec();
        let plain = key
            .open_in_place(
                aead::Nonce::try_assume_unique_for_key(&nonce).unwrap(),
                aead::Aad::empty(),
                &mut buf,
            )
            .expect("the payload decrypts with the browser's keys")
            .to_vec();
        assert_eq!(plain.last(), Some(&2), "last record ends with delimiter 2");
        let end = plain.iter().rposition(|b| *b == 2).unwrap();
        plain[..end].to_vec()
    }
}

/// Checks a VAPID `Authorization` header for `endpoint_origin`; returns the
/// JWT claims.
pub fn verify_vapid(header: &str, endpoint_origin: &str) -> serde_json::Value {
    let (token, k) = header
        .strip_prefix("vapid t=")
        .and_then(|rest| rest.split_once(", k="))
        .unwrap_or_else(|| panic!("not a vapid header: {header}"));
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, b64(k))
        .verify(signing_input.as_bytes(), &b64(signature))
        .expect("the VAPID JWT verifies with k");
    let (header_part, claims_part) = signing_input.split_once('.').unwrap();
    let jwt_header: serde_json::Value = serde_json::from_slice(&b64(header_part)).unwrap();
    assert_eq!(jwt_header["alg"], "ES256");
    let claims: serde_json::Value = serde_json::from_slice(&b64(claims_part)).unwrap();
    assert_eq!(claims["aud"], endpoint_origin);
    claims
}
