//! One conformance suite over every object backend: memory, a directory,
//! and an S3-compatible server when `MEDIA_TEST_S3_ENDPOINT` names one (CI
//! starts moto's S3 server; elsewhere the S3 case says it skipped).

use media_svc::objects::Objects;
use platform::config::MediaSettings;

const KEY: &str = "ab12000000000000000000000000000000000000000000000000000000000000";

async fn conformance(objects: Objects) {
    let path = format!("{KEY}/original");
    assert_eq!(objects.size(&path).await.unwrap(), None);
    assert!(objects.read(&path, None).await.unwrap().is_none());
    assert_eq!(objects.modified_ms(&path).await.unwrap(), None);

    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    objects.put(&path, bytes.clone()).await.unwrap();
    objects
        .put(&format!("{KEY}/160"), b"thumb".to_vec())
        .await
        .unwrap();
    assert_eq!(objects.size(&path).await.unwrap(), Some(bytes.len() as u64));
    assert_eq!(objects.read_all(&path).await.unwrap().unwrap(), bytes);
    let modified = objects.modified_ms(&path).await.unwrap().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        (now - modified).abs() < 120_000,
        "written just now: {modified} vs {now}"
    );

    // A range, and its reported bounds.
    let mut reading = objects
        .read(&path, Some(1000..1100))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (reading.total, reading.range.clone()),
        (bytes.len() as u64, 1000..1100)
    );
    let mut part = Vec::new();
    use futures::StreamExt as _;
    while let Some(chunk) = reading.chunks.next().await {
        part.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(part, bytes[1000..1100]);

    // Writing the same bytes again is harmless.
    objects.put(&path, bytes.clone()).await.unwrap();
    assert_eq!(objects.read_all(&path).await.unwrap().unwrap(), bytes);

    let mut listed: Vec<String> = objects
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.path)
        .collect();
    listed.sort();
    assert_eq!(listed, [format!("{KEY}/160"), path.clone()]);

    objects.delete(&path).await.unwrap();
    objects.delete(&path).await.unwrap();
    objects.delete(&format!("{KEY}/160")).await.unwrap();
    assert!(objects.list().await.unwrap().is_empty());
    objects.ping().await.unwrap();
}

#[tokio::test]
async fn memory_backend_conforms() {
    conformance(Objects::memory()).await;
}

#[tokio::test]
async fn file_backend_conforms() {
    let dir = std::env::temp_dir().join(format!("media-objects-{}", uuid::Uuid::now_v7().simple()));
    let settings = MediaSettings {
        store_url: format!("file://{}", dir.display()),
        ..MediaSettings::default()
    };
    let objects = Objects::from_settings(&settings).unwrap();
    assert_eq!(objects.backend(), "file");
    conformance(objects).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn s3_backend_conforms() {
    let Ok(endpoint) = std::env::var("MEDIA_TEST_S3_ENDPOINT") else {
        assert!(std::env::var_os("CI").is_none(), "CI starts an S3 server");
        eprintln!(
            "skipped: no S3-compatible server (set MEDIA_TEST_S3_ENDPOINT, e.g. moto_server)"
        );
        return;
    };
    let bucket = format!("media-{}", uuid::Uuid::now_v7().simple());
    // moto takes any credentials; the bucket is made with a plain PUT.
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .expect("the S3 server answers");
    assert!(
        created.status().is_success(),
        "creating the bucket: {}",
        created.status()
    );
    // SAFETY: set before any other thread of this test reads them; the
    // builder reads the AWS variables once.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_REGION", "us-east-1");
    }
    let settings = MediaSettings {
        store_url: format!("s3://{bucket}"),
        s3_endpoint: Some(endpoint),
        ..MediaSettings::default()
    };
    let objects = Objects::from_settings(&settings).unwrap();
    assert_eq!(objects.backend(), "s3");
    conformance(objects).await;
}
