//! Product images: admins upload (multipart, streamed to media-svc),
//! delete and order them; anyone reads `/media/{key}` with a strong ETag,
//! immutable caching, `If-None-Match` and byte ranges.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt as _;
use platform::{ErrorKind, ServiceId};
use proto::ext::Required as _;
use proto::media::media_service_client::MediaServiceClient;
use proto::media::upload_media_request::Part;
use proto::media::{ReadMediaRequest, UploadInfo, UploadMediaRequest};
use serde::Deserialize;
use utoipa::ToSchema;

use super::grpc;
use super::products::{ImageOut, ProductOut, product_id, products};
use crate::extract::{AdminUser, ApiJson};
use crate::problem::Problem;
use crate::state::AppState;

fn media(state: &AppState) -> MediaServiceClient<platform::grpc::GrpcChannel> {
    MediaServiceClient::new(state.channel(ServiceId::Media))
}

/// Bytes forwarded per upload message.
const CHUNK: usize = 256 * 1024;
/// How long media-svc may take to receive and convert an upload (its
/// server's own limit, `GRPC_SERVER_TIMEOUT_MS`, is 30 s by default).
pub const UPLOAD_DEADLINE: Duration = Duration::from_secs(30);
/// How long an upload or delete waits for the product to show it.
const SHOWN_WITHIN: Duration = Duration::from_secs(3);

/// Waits until product `id` satisfies `shown` (the event from media-svc
/// has been applied), so the next read after the answer shows the change.
/// Gives up quietly after [`SHOWN_WITHIN`]: the change is stored and will
/// show.
async fn until_product(
    state: &AppState,
    id: &str,
    shown: impl Fn(&proto::product::Product) -> bool,
) {
    let deadline = tokio::time::Instant::now() + SHOWN_WITHIN;
    loop {
        let request = grpc(
            proto::product::GetProductDetailsRequest {
                product_id: id.to_string(),
            },
            None,
        );
        if let Ok(r) = products(state).get_product_details(request).await
            && r.into_inner().product.as_ref().is_some_and(&shown)
        {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                product_id = id,
                "the product did not show the image change in time"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn multipart_problem(err: axum::extract::multipart::MultipartError) -> Problem {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::new(ErrorKind::PayloadTooLarge, err.body_text())
    } else {
        Problem::new(ErrorKind::Malformed, err.body_text())
    }
}

/// Reads and drops the rest of a refused upload (up to a few times the
/// limit in all), so the client, still sending, gets the answer instead
/// of a closed connection: first the field being read, then the others.
async fn drain_field(mut field: axum::extract::multipart::Field<'_>, left: &mut u64) {
    while *left > 0
        && let Ok(Some(chunk)) = field.chunk().await
    {
        *left = left.saturating_sub(chunk.len() as u64);
    }
}

async fn drain_rest(multipart: &mut Multipart, mut left: u64) {
    while left > 0
        && let Ok(Some(field)) = multipart.next_field().await
    {
        drain_field(field, &mut left).await;
    }
}

fn too_large(limit: u64) -> Problem {
    Problem::new(
        ErrorKind::PayloadTooLarge,
        format!("the file is larger than {limit} bytes"),
    )
}

/// Upload form (`multipart/form-data`). The file is streamed through to
/// media-svc as it arrives; `alt` may come before or after it.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ImageUpload {
    /// The image: JPEG, PNG or WebP, whatever its declared type.
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    file: String,
    /// Text alternative, at most 300 characters.
    alt: Option<String>,
}

/// Upload an image of a product (admin).
#[utoipa::path(operation_id = "upload_product_image", post, path = "/api/v1/products/{id}/images", tag = "products",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Product id")),
    request_body(content = ImageUpload, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Stored; the product shows it", body = ImageOut),
        (status = 400, description = "Not a well-formed multipart body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown product", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The product shows the most images it may (20)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Larger than MEDIA_MAX_UPLOAD_BYTES", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not a JPEG, PNG or WebP image (by its bytes)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No file, an undecodable image, or above the pixel limits", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn upload(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, Problem> {
    let id = product_id(&id)?;
    let mut multipart = multipart.map_err(|rejection| {
        Problem::new(
            ErrorKind::UnsupportedMediaType,
            format!(
                "send multipart/form-data with a `file` part: {}",
                rejection.body_text()
            ),
        )
    })?;
    let limit = state.config().media.max_upload_bytes;
    let mut alt = String::new();
    let mut sent: Option<(tokio::sync::mpsc::Sender<UploadMediaRequest>, _)> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_problem)? {
        match field.name() {
            Some("alt") => {
                let text = field.text().await.map_err(multipart_problem)?;
                if text.len() > 4096 {
                    return Err(Problem::new(ErrorKind::InvalidArgument, "alt is too long"));
                }
                if let Some((tx, _)) = &sent {
                    // After the file: sent on, media-svc replaces the alt.
                    let part = Some(Part::Alt(text.clone()));
                    let _ = tx.send(UploadMediaRequest { part }).await;
                }
                alt = text;
            }
            Some("file") if sent.is_none() => {
                let filename = field.file_name().unwrap_or_default().to_string();
                let (tx, rx) = tokio::sync::mpsc::channel::<UploadMediaRequest>(4);
                let info = UploadInfo {
                    product_id: id.clone(),
                    alt: alt.clone(),
                    filename,
                };
                tx.send(UploadMediaRequest {
                    part: Some(Part::Info(info)),
                })
                .await
                .ok();
                let mut request = grpc(
                    tokio_stream::wrappers::ReceiverStream::new(rx),
                    Some(&admin.caller()),
                );
                // Receiving and converting a large image (after others
                // waiting their turn) outlasts the per-call deadline.
                request.set_timeout(UPLOAD_DEADLINE);
                let mut client = media(&state);
                let call = tokio::spawn(async move { client.upload_media(request).await });
                let mut total = 0u64;
                while let Some(chunk) = field.chunk().await.map_err(multipart_problem)? {
                    total += chunk.len() as u64;
                    if total > limit {
                        call.abort();
                        let mut left = limit.saturating_mul(4);
                        drain_field(field, &mut left).await;
                        drain_rest(&mut multipart, left).await;
                        return Err(too_large(limit));
                    }
                    for piece in chunk.chunks(CHUNK) {
                        let part = Some(Part::Chunk(piece.to_vec()));
                        if tx.send(UploadMediaRequest { part }).await.is_err() {
                            // media-svc answered early (a refusal).
                            break;
                        }
                    }
                }
                sent = Some((tx, call));
            }
            _ => {
                // Other parts are read and ignored.
                while field.chunk().await.map_err(multipart_problem)?.is_some() {}
            }
        }
    }
    let Some((tx, call)) = sent else {
        return Err(
            Problem::new(ErrorKind::InvalidArgument, "the form has no `file` part").with_errors(
                vec![crate::problem::FieldError {
                    field: "file".into(),
                    message: "is required".into(),
                }],
            ),
        );
    };
    drop(tx);
    let answer = call
        .await
        .map_err(|e| Problem::new(ErrorKind::Internal, format!("upload task: {e}")))??
        .into_inner();
    let image = answer.media.required("media")?;
    let image_id = image.id.clone();
    until_product(&state, &id, |p| p.images.iter().any(|i| i.id == image_id)).await;
    Ok((StatusCode::CREATED, Json(ImageOut::from(image))).into_response())
}

/// Delete an image of a product (admin). Its bytes are removed later,
/// once nothing references them.
#[utoipa::path(operation_id = "delete_product_image", delete, path = "/api/v1/products/{id}/images/{image_id}", tag = "products",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Product id"), ("image_id" = String, Path, description = "Image id")),
    responses(
        (status = 204, description = "Deleted; the product no longer shows it"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown product or image", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path((id, image_id)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    let id = product_id(&id)?;
    let not_found = || Problem::new(ErrorKind::NotFound, "image not found");
    uuid::Uuid::parse_str(&image_id).map_err(|_| not_found())?;
    let found = media(&state)
        .get_media(grpc(
            proto::media::GetMediaRequest {
                media_id: image_id.clone(),
            },
            None,
        ))
        .await;
    match found {
        Ok(m)
            if m.get_ref()
                .media
                .as_ref()
                .is_some_and(|m| m.product_id == id) => {}
        Ok(_) => return Err(not_found()),
        Err(status) if status.code() == tonic::Code::NotFound => return Err(not_found()),
        Err(status) => return Err(status.into()),
    }
    media(&state)
        .delete_media(grpc(
            proto::media::DeleteMediaRequest {
                media_id: image_id.clone(),
            },
            Some(&admin.caller()),
        ))
        .await?;
    until_product(&state, &id, |p| p.images.iter().all(|i| i.id != image_id)).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The images of a product in their new order.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ImageOrder {
    /// Every image id of the product, primary first.
    pub image_ids: Vec<String>,
}

/// Order a product's images (admin); the first is the primary one.
#[utoipa::path(operation_id = "order_product_images", put, path = "/api/v1/products/{id}/images/order", tag = "products",
    security(("bearer" = [])), request_body = ImageOrder,
    params(("id" = String, Path, description = "Product id")),
    responses(
        (status = 200, description = "The product with its images in the new order", body = ProductOut),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown product", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The ids are not each of the product's images exactly once", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn order(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ImageOrder>,
) -> Result<Json<ProductOut>, Problem> {
    let request = proto::product::SetImageOrderRequest {
        product_id: product_id(&id)?,
        image_ids: body.image_ids,
    };
    let r = products(&state)
        .set_image_order(grpc(request, Some(&admin.caller())))
        .await?
        .into_inner();
    Ok(Json(ProductOut::from(r.product.required("product")?)))
}

/// Small stored objects kept in the gateway's memory: they never change
/// (keys are content hashes), so a copy is always right. Oldest out first
/// once the budget is spent; a copy is dropped after [`CACHE_TTL`], so
/// bytes swept from storage stop being served soon after.
#[derive(Debug, Default)]
pub struct MediaCache {
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    entries: HashMap<(String, u32), (String, Bytes, std::time::Instant)>,
    order: VecDeque<(String, u32)>,
    bytes: usize,
}

/// Largest object the cache keeps, and the most it holds in all.
const CACHE_OBJECT_MAX: usize = 512 * 1024;
const CACHE_BUDGET: usize = 64 * 1024 * 1024;
const CACHE_TTL: Duration = Duration::from_secs(600);

impl MediaCache {
    fn get(&self, key: &str, width: u32) -> Option<(String, Bytes)> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .entries
            .get(&(key.to_string(), width))
            .filter(|(_, _, at)| at.elapsed() < CACHE_TTL)
            .map(|(content_type, bytes, _)| (content_type.clone(), bytes.clone()))
    }

    fn put(&self, key: &str, width: u32, content_type: String, bytes: Bytes) {
        if bytes.len() > CACHE_OBJECT_MAX {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let id = (key.to_string(), width);
        if let Some((_, old, _)) = inner.entries.remove(&id) {
            // An expired copy, read again.
            inner.bytes -= old.len();
            inner.order.retain(|o| o != &id);
        }
        while inner.bytes + bytes.len() > CACHE_BUDGET {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some((_, gone, _)) = inner.entries.remove(&oldest) {
                inner.bytes -= gone.len();
            }
        }
        inner.bytes += bytes.len();
        inner.order.push_back(id.clone());
        inner
            .entries
            .insert(id, (content_type, bytes, std::time::Instant::now()));
    }
}

/// A `Range` header's one range, resolved against the object's size:
/// `Ok(None)` for the whole object, `Err(())` when it cannot be satisfied.
fn resolve_range(header: Option<&str>, total: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    // Several ranges: answered with the whole object, as RFC 9110 allows.
    if spec.contains(',') {
        return Ok(None);
    }
    let (start, end) = spec.split_once('-').ok_or(())?;
    let (start, end) = (start.trim(), end.trim());
    let range = if start.is_empty() {
        let suffix: u64 = end.parse().map_err(|_| ())?;
        if suffix == 0 {
            return Err(());
        }
        (total.saturating_sub(suffix), total.saturating_sub(1))
    } else {
        let start: u64 = start.parse().map_err(|_| ())?;
        let end = if end.is_empty() {
            total.saturating_sub(1)
        } else {
            end.parse::<u64>()
                .map_err(|_| ())?
                .min(total.saturating_sub(1))
        };
        (start, end)
    };
    if total == 0 || range.0 >= total || range.0 > range.1 {
        return Err(());
    }
    Ok(Some(range))
}

fn etag(key: &str, width: u32) -> String {
    if width == 0 {
        format!("\"{key}\"")
    } else {
        format!("\"{key}-{width}\"")
    }
}

fn etag_matches(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim() == "*"
                || v.split(',')
                    .any(|t| t.trim().trim_start_matches("W/") == tag)
        })
}

fn media_not_found() -> Problem {
    Problem::new(ErrorKind::NotFound, "no such media")
}

/// Headers of every answer with the object's bytes (or a 304).
fn object_headers(
    builder: axum::http::response::Builder,
    tag: &str,
) -> axum::http::response::Builder {
    builder
        .header(header::ETAG, tag)
        .header(header::CACHE_CONTROL, "public, max-age=31536000, immutable")
        .header(header::ACCEPT_RANGES, "bytes")
        // Uploaded content is never a document that could run script.
        .header(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; sandbox",
        )
}

/// Reads a stored object: the whole of it when small enough to cache.
async fn serve(
    state: &AppState,
    headers: &HeaderMap,
    key: &str,
    width: u32,
) -> Result<Response, Problem> {
    if key.len() != 64 || !key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(media_not_found());
    }
    let tag = etag(key, width);
    if etag_matches(headers, &tag) {
        return object_headers(Response::builder().status(StatusCode::NOT_MODIFIED), &tag)
            .body(Body::empty())
            .map_err(|e| Problem::new(ErrorKind::Internal, e.to_string()));
    }
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let cache = state.media_cache();
    let (content_type, whole) = match cache.get(key, width) {
        Some(hit) => hit,
        None => {
            let mut stream = media(state)
                .read_media(grpc(
                    ReadMediaRequest {
                        key: key.to_string(),
                        width,
                        offset: 0,
                        length: 0,
                    },
                    None,
                ))
                .await
                .map_err(|s| {
                    if s.code() == tonic::Code::NotFound {
                        media_not_found()
                    } else {
                        s.into()
                    }
                })?
                .into_inner();
            let first = stream.message().await?.ok_or_else(media_not_found)?;
            let total = first.total_bytes;
            let content_type = first.content_type.clone();
            if total as usize > CACHE_OBJECT_MAX {
                return stream_object(
                    state,
                    key,
                    width,
                    total,
                    content_type,
                    range,
                    &tag,
                    first.chunk,
                    stream,
                )
                .await;
            }
            let mut bytes = first.chunk;
            while let Some(next) = stream.message().await? {
                bytes.extend_from_slice(&next.chunk);
            }
            let bytes = Bytes::from(bytes);
            cache.put(key, width, content_type.clone(), bytes.clone());
            (content_type, bytes)
        }
    };
    let total = whole.len() as u64;
    let builder =
        object_headers(Response::builder(), &tag).header(header::CONTENT_TYPE, &content_type);
    let response = match resolve_range(range, total) {
        Ok(None) => builder
            .header(header::CONTENT_LENGTH, total)
            .body(Body::from(whole)),
        Ok(Some((start, end))) => builder
            .status(StatusCode::PARTIAL_CONTENT)
            .header(
                header::CONTENT_RANGE,
                format!("bytes {start}-{end}/{total}"),
            )
            .header(header::CONTENT_LENGTH, end - start + 1)
            .body(Body::from(whole.slice(start as usize..=end as usize))),
        Err(()) => return Ok(unsatisfiable(total)),
    };
    response.map_err(|e| Problem::new(ErrorKind::Internal, e.to_string()))
}

fn unsatisfiable(total: u64) -> Response {
    let mut response = Problem::new(
        ErrorKind::InvalidArgument,
        "the range is outside the object",
    )
    .into_response();
    *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
    response.headers_mut().insert(
        header::CONTENT_RANGE,
        HeaderValue::from_str(&format!("bytes */{total}"))
            .unwrap_or(HeaderValue::from_static("bytes */0")),
    );
    response
}

/// A large object: streamed from media-svc as it comes, the whole of it or
/// the requested range (read again from its offset).
#[allow(clippy::too_many_arguments)]
async fn stream_object(
    state: &AppState,
    key: &str,
    width: u32,
    total: u64,
    content_type: String,
    range: Option<&str>,
    tag: &str,
    first_chunk: Vec<u8>,
    stream: tonic::Streaming<proto::media::ReadMediaResponse>,
) -> Result<Response, Problem> {
    let builder =
        object_headers(Response::builder(), tag).header(header::CONTENT_TYPE, &content_type);
    let body_of = |first: Vec<u8>, rest: tonic::Streaming<proto::media::ReadMediaResponse>| {
        let rest = rest.map(|m| {
            m.map(|m| Bytes::from(m.chunk))
                .map_err(std::io::Error::other)
        });
        Body::from_stream(futures::stream::once(async move { Ok(Bytes::from(first)) }).chain(rest))
    };
    let response = match resolve_range(range, total) {
        Ok(None) => builder
            .header(header::CONTENT_LENGTH, total)
            .body(body_of(first_chunk, stream)),
        Ok(Some((start, end))) => {
            drop(stream);
            let mut ranged = media(state)
                .read_media(grpc(
                    ReadMediaRequest {
                        key: key.to_string(),
                        width,
                        offset: start,
                        length: end - start + 1,
                    },
                    None,
                ))
                .await?
                .into_inner();
            let first = ranged.message().await?.map(|m| m.chunk).unwrap_or_default();
            builder
                .status(StatusCode::PARTIAL_CONTENT)
                .header(
                    header::CONTENT_RANGE,
                    format!("bytes {start}-{end}/{total}"),
                )
                .header(header::CONTENT_LENGTH, end - start + 1)
                .body(body_of(first, ranged))
        }
        Err(()) => return Ok(unsatisfiable(total)),
    };
    response.map_err(|e| Problem::new(ErrorKind::Internal, e.to_string()))
}

/// A stored image.
#[utoipa::path(operation_id = "get_media", get, path = "/media/{key}", tag = "media",
    params(("key" = String, Path, description = "The image's key (hex SHA-256)")),
    responses(
        (status = 200, description = "The bytes; strong ETag, cached for a year",
            content(("image/jpeg"), ("image/png"), ("image/webp"))),
        (status = 206, description = "The requested byte range",
            content(("image/jpeg"), ("image/png"), ("image/webp"))),
        (status = 304, description = "Unchanged (If-None-Match)"),
        (status = 404, description = "No such media", body = Problem, content_type = "application/problem+json"),
        (status = 416, description = "The range is outside the object", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn original(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Response, Problem> {
    serve(&state, &headers, &key, 0).await
}

/// A thumbnail of a stored image.
#[utoipa::path(operation_id = "get_media_thumbnail", get, path = "/media/{key}/{width}", tag = "media",
    params(
        ("key" = String, Path, description = "The image's key (hex SHA-256)"),
        ("width" = u32, Path, description = "A thumbnail width listed on the image"),
    ),
    responses(
        (status = 200, description = "The thumbnail; strong ETag, cached for a year",
            content(("image/jpeg"), ("image/png"))),
        (status = 206, description = "The requested byte range",
            content(("image/jpeg"), ("image/png"))),
        (status = 304, description = "Unchanged (If-None-Match)"),
        (status = 404, description = "No such media or width", body = Problem, content_type = "application/problem+json"),
        (status = 416, description = "The range is outside the object", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn thumbnail(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((key, width)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let width = width
        .parse::<u32>()
        .ok()
        .filter(|w| *w > 0)
        .ok_or_else(media_not_found)?;
    serve(&state, &headers, &key, width).await
}

/// Shared by the state: one cache per gateway.
pub fn new_cache() -> Arc<MediaCache> {
    Arc::new(MediaCache::default())
}

#[cfg(test)]
mod tests {
    use super::resolve_range;

    #[test]
    fn ranges_resolve_against_the_size() {
        assert_eq!(resolve_range(None, 10), Ok(None));
        assert_eq!(resolve_range(Some("bytes=0-3"), 10), Ok(Some((0, 3))));
        assert_eq!(resolve_range(Some("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(resolve_range(Some("bytes=-4"), 10), Ok(Some((6, 9))));
        assert_eq!(resolve_range(Some("bytes=8-100"), 10), Ok(Some((8, 9))));
        assert_eq!(resolve_range(Some("bytes=0-1,4-5"), 10), Ok(None));
        assert_eq!(resolve_range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(resolve_range(Some("bytes=5-2"), 10), Err(()));
        assert_eq!(resolve_range(Some("bytes=x-"), 10), Err(()));
        assert_eq!(resolve_range(Some("items=0-1"), 10), Ok(None));
    }
}
