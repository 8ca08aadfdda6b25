//! gRPC face of `MediaService`: who calls, proto <-> domain, errors to
//! statuses once. The work is the [`Library`]'s.

use std::pin::Pin;

use futures::{Stream, StreamExt as _};
use platform::auth::MeshAuth;
use platform::grpc::GrpcChannel;
use proto::media::media_service_server::MediaService;
use proto::media::upload_media_request::Part;
use proto::media::*;
use proto::product::product_service_client::ProductServiceClient;
use tonic::{Request, Response, Status, Streaming};

use crate::convert;
use crate::domain::{self, Refusal};
use crate::library::{Library, LibraryError};

/// Largest chunk ReadMedia sends.
const READ_CHUNK: usize = 256 * 1024;

#[derive(Clone, Debug)]
pub struct MediaApi {
    pub library: Library,
    /// Asked whether a product exists before its upload is read.
    pub catalog: ProductServiceClient<GrpcChannel>,
    pub mesh: MeshAuth,
}

impl From<LibraryError> for Status {
    fn from(err: LibraryError) -> Self {
        match err {
            LibraryError::Refused(refusal) => {
                platform::error::refused(refusal.kind(), refusal.to_string())
            }
            LibraryError::NotFound => Status::not_found("media not found"),
            LibraryError::Store(err) => err.into(),
            LibraryError::Objects(err) => {
                tracing::error!(error = %err, "object storage failed");
                Status::unavailable("media storage is unavailable")
            }
            LibraryError::Worker(err) => Status::internal(err),
        }
    }
}

fn valid_id(field: &str, id: &str) -> Result<(), Status> {
    uuid::Uuid::parse_str(id)
        .map(|_| ())
        .map_err(|_| platform::error::invalid_fields([(field, "must be a UUID".to_string())]))
}

impl MediaApi {
    /// Fails unless the product exists (NOT_FOUND), has room for another
    /// image (FAILED_PRECONDITION) and its catalog answers. Checked before
    /// the file is read; storing the record checks the room again in the
    /// same write.
    async fn require_product(&self, product_id: &str) -> Result<(), Status> {
        let request = self.mesh.request(proto::product::GetProductDetailsRequest {
            product_id: product_id.to_string(),
        });
        match self.catalog.clone().get_product_details(request).await {
            Ok(_) => {
                self.library.free_slot(product_id).await?;
                Ok(())
            }
            Err(status) if status.code() == tonic::Code::NotFound => {
                Err(Status::not_found("product not found"))
            }
            Err(status) => Err(status),
        }
    }

    /// Receives the file (and an alt text sent after it), refusing the
    /// file as soon as it passes the limit.
    async fn receive(
        &self,
        stream: &mut Streaming<UploadMediaRequest>,
        alt: &mut String,
    ) -> Result<Vec<u8>, Status> {
        let max = self.library.limits.max_bytes;
        // Kept as received and joined once, at their exact size: a growing
        // buffer would hold up to twice the file while it waits its turn.
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        let mut received = 0u64;
        while let Some(message) = stream.message().await? {
            match message.part {
                Some(Part::Chunk(chunk)) => {
                    received += chunk.len() as u64;
                    if received > max {
                        return Err(LibraryError::from(Refusal::TooLarge { limit: max }).into());
                    }
                    chunks.push(chunk);
                }
                Some(Part::Alt(text)) => {
                    *alt = domain::parse_alt(&text).map_err(|e| platform::error::invalid([e]))?;
                }
                Some(Part::Info(_)) => {
                    return Err(Status::invalid_argument(
                        "info may only be the first message",
                    ));
                }
                None => {}
            }
        }
        Ok(chunks.concat())
    }
}

type ReadStream = Pin<Box<dyn Stream<Item = Result<ReadMediaResponse, Status>> + Send>>;

#[tonic::async_trait]
impl MediaService for MediaApi {
    #[tracing::instrument(skip_all)]
    async fn upload_media(
        &self,
        request: Request<Streaming<UploadMediaRequest>>,
    ) -> Result<Response<UploadMediaResponse>, Status> {
        self.mesh
            .caller(request.metadata())
            .await?
            .require_admin()?;
        let mut stream = request.into_inner();
        let info = match stream.message().await? {
            Some(UploadMediaRequest {
                part: Some(Part::Info(info)),
            }) => info,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be info (product_id, alt)",
                ));
            }
        };
        valid_id("product_id", &info.product_id)?;
        let mut alt = domain::parse_alt(&info.alt).map_err(|e| platform::error::invalid([e]))?;
        self.require_product(&info.product_id).await?;
        let _turn = self
            .library
            .intake
            .acquire()
            .await
            .map_err(|_| Status::unavailable("media-svc is stopping"))?;
        let bytes = self.receive(&mut stream, &mut alt).await?;
        tracing::info!(
            product_id = info.product_id,
            filename = info.filename,
            size = bytes.len(),
            "upload received"
        );
        let done = self.library.process(bytes).await?;
        let (doc, created) = self.library.store(&info.product_id, &alt, done).await?;
        Ok(Response::new(UploadMediaResponse {
            media: Some(convert::media(&doc.id, &doc.value)),
            created,
        }))
    }

    async fn get_media(
        &self,
        request: Request<GetMediaRequest>,
    ) -> Result<Response<GetMediaResponse>, Status> {
        let doc = self.library.get(&request.into_inner().media_id).await?;
        Ok(Response::new(GetMediaResponse {
            media: Some(convert::media(&doc.id, &doc.value)),
        }))
    }

    async fn read_media(
        &self,
        request: Request<ReadMediaRequest>,
    ) -> Result<Response<ReadStream>, Status> {
        let r = request.into_inner();
        if !domain::is_key(&r.key) {
            return Err(Status::not_found("no such media"));
        }
        let path = domain::object_path(&r.key, r.width);
        let objects = &self.library.objects;
        let total = objects
            .size(&path)
            .await
            .map_err(LibraryError::from)?
            .ok_or_else(|| Status::not_found("no such media"))?;
        if r.offset > 0 && r.offset >= total {
            return Err(Status::out_of_range(format!(
                "offset {} is past the end ({total} bytes)",
                r.offset
            )));
        }
        let end = match r.length {
            0 => total,
            n => r.offset.saturating_add(n).min(total),
        };
        let mut reading = objects
            .read(
                &path,
                (r.offset > 0 || end < total).then_some(r.offset..end),
            )
            .await
            .map_err(LibraryError::from)?
            .ok_or_else(|| Status::not_found("no such media"))?;
        let first_chunk = match reading.chunks.next().await {
            Some(chunk) => chunk.map_err(LibraryError::from)?,
            None => bytes::Bytes::new(),
        };
        let content_type = if r.offset == 0 {
            sniffed(&first_chunk)
        } else {
            let head = objects
                .read(&path, Some(0..16))
                .await
                .map_err(LibraryError::from)?;
            let mut magic = Vec::new();
            if let Some(mut head) = head
                && let Some(Ok(chunk)) = head.chunks.next().await
            {
                magic = chunk.to_vec();
            }
            sniffed(&magic)
        };
        let mut first = Some((content_type, total));
        let stream = futures::stream::once(async move { Ok(first_chunk) })
            .chain(reading.chunks)
            .flat_map(|chunk| {
                let pieces: Vec<Result<bytes::Bytes, Status>> = match chunk {
                    Ok(bytes) => (0..bytes.len())
                        .step_by(READ_CHUNK)
                        .map(|at| Ok(bytes.slice(at..(at + READ_CHUNK).min(bytes.len()))))
                        .collect(),
                    Err(err) => vec![Err(Status::from(LibraryError::from(err)))],
                };
                futures::stream::iter(pieces)
            })
            .map(move |piece| {
                piece.map(|chunk| {
                    let (content_type, total_bytes) = first.take().unwrap_or_default();
                    ReadMediaResponse {
                        content_type,
                        total_bytes,
                        chunk: chunk.to_vec(),
                    }
                })
            });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn delete_media(
        &self,
        request: Request<DeleteMediaRequest>,
    ) -> Result<Response<DeleteMediaResponse>, Status> {
        self.mesh
            .caller(request.metadata())
            .await?
            .require_admin()?;
        self.library.delete(&request.into_inner().media_id).await?;
        Ok(Response::new(DeleteMediaResponse {}))
    }

    async fn list_media(
        &self,
        request: Request<ListMediaRequest>,
    ) -> Result<Response<ListMediaResponse>, Status> {
        let product_id = request.into_inner().product_id;
        valid_id("product_id", &product_id)?;
        let media = self.library.of_product(&product_id).await?;
        Ok(Response::new(ListMediaResponse {
            media: media
                .iter()
                .map(|m| convert::media(&m.id, &m.value))
                .collect(),
        }))
    }
}

/// The MIME type of stored bytes, from their magic numbers (every stored
/// object is a JPEG, PNG or WebP this service wrote).
fn sniffed(first: &[u8]) -> String {
    domain::Kind::sniff(first)
        .map(domain::Kind::content_type)
        .unwrap_or("application/octet-stream")
        .to_string()
}
