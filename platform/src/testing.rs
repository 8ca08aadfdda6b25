//! Client-side checks of a running gRPC server: health and reflection.
//!
//! Used by the test suites and handy from operational tooling: they speak
//! to a real server over a real connection, as grpcurl would.

use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

async fn connect(addr: SocketAddr) -> anyhow::Result<Channel> {
    Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))
}

/// `grpc.health.v1.Health/Check` for `service` ("" = the whole server).
pub async fn health(addr: SocketAddr, service: &str) -> anyhow::Result<ServingStatus> {
    let mut client = tonic_health::pb::health_client::HealthClient::new(connect(addr).await?);
    let response = client
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.to_string(),
        })
        .await?
        .into_inner();
    ServingStatus::try_from(response.status).context("unknown serving status")
}

/// Which reflection protocol to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reflection {
    V1,
    V1Alpha,
}

macro_rules! reflection_client {
    ($module:ident) => {
        mod $module {
            use tonic_reflection::pb::$module::ServerReflectionRequest;
            use tonic_reflection::pb::$module::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::$module::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$module::server_reflection_response::MessageResponse;

            use super::Answer;

            pub(super) async fn ask(
                channel: tonic::transport::Channel,
                list: bool,
                symbol: &str,
            ) -> anyhow::Result<Answer> {
                let mut client = ServerReflectionClient::new(channel);
                let message = if list {
                    MessageRequest::ListServices(String::new())
                } else {
                    MessageRequest::FileContainingSymbol(symbol.to_string())
                };
                let request = ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(message),
                };
                let mut stream = client
                    .server_reflection_info(tokio_stream::once(request))
                    .await?
                    .into_inner();
                let response = stream
                    .message()
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("empty reflection stream"))?;
                Ok(match response.message_response {
                    Some(MessageResponse::ListServicesResponse(list)) => {
                        Answer::Services(list.service.into_iter().map(|s| s.name).collect())
                    }
                    Some(MessageResponse::FileDescriptorResponse(files)) => {
                        Answer::Files(files.file_descriptor_proto)
                    }
                    Some(MessageResponse::ErrorResponse(e)) => {
                        Answer::Error(e.error_code, e.error_message)
                    }
                    _ => anyhow::bail!("unexpected reflection answer"),
                })
            }
        }
    };
}

reflection_client!(v1);
reflection_client!(v1alpha);

enum Answer {
    Services(Vec<String>),
    Files(Vec<Vec<u8>>),
    Error(i32, String),
}

async fn ask(
    addr: SocketAddr,
    protocol: Reflection,
    list: bool,
    symbol: &str,
) -> anyhow::Result<Answer> {
    let channel = connect(addr).await?;
    Ok(match protocol {
        Reflection::V1 => v1::ask(channel, list, symbol).await?,
        Reflection::V1Alpha => v1alpha::ask(channel, list, symbol).await?,
    })
}

/// The services a server lists over reflection (`grpcurl list`).
pub async fn list_services(addr: SocketAddr, protocol: Reflection) -> anyhow::Result<Vec<String>> {
    match ask(addr, protocol, true, "").await? {
        Answer::Services(mut names) => {
            names.sort();
            Ok(names)
        }
        Answer::Error(code, message) => bail!("reflection error {code}: {message}"),
        Answer::Files(_) => bail!("unexpected file answer to a list request"),
    }
}

/// The encoded file descriptors that define `symbol` (`grpcurl describe`).
pub async fn file_containing_symbol(
    addr: SocketAddr,
    protocol: Reflection,
    symbol: &str,
) -> anyhow::Result<Vec<Vec<u8>>> {
    match ask(addr, protocol, false, symbol).await? {
        Answer::Files(files) => Ok(files),
        Answer::Error(code, message) => bail!("reflection error {code}: {message}"),
        Answer::Services(_) => bail!("unexpected list answer to a symbol request"),
    }
}
