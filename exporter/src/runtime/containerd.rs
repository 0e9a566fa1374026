//! containerd's own API, for containers started without CRI (`ctr run`, nerdctl,
//! BuildKit): their cgroup is `/<namespace>/<id>` and the CRI plugin does not list
//! them. One `containers.v1.Containers/Get` per container, in its namespace (the
//! `containerd-namespace` request header).
//!
//! The three messages are written out here instead of generated: only these fields
//! are read, and prost skips the rest of containerd's `Container`
//! (api/services/containers/v1/containers.proto).
use std::{collections::HashMap, path::Path, time::Duration};

use tonic::{client::Grpc, codegen::http::uri::PathAndQuery, transport::Channel};

use super::{ContainerMeta, RuntimeError};

#[derive(Clone, PartialEq, prost::Message)]
struct GetContainerRequest {
    #[prost(string, tag = "1")]
    id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GetContainerResponse {
    #[prost(message, optional, tag = "1")]
    container: Option<Container>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Container {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(map = "string, string", tag = "2")]
    labels: HashMap<String, String>,
    #[prost(string, tag = "3")]
    image: String,
}

/// Metadata of container `id` in containerd namespace `namespace`: `name` = id,
/// `image` = the image reference; pod labels only if it carries the kubelet's
/// `io.kubernetes.*` labels. `None` when this containerd does not know the container
/// (another runtime's, or not a container at all): a miss, not an error.
pub async fn container(
    socket: &Path,
    namespace: &str,
    id: &str,
    timeout: Duration,
) -> Result<Option<ContainerMeta>, RuntimeError> {
    let endpoint = socket.display().to_string();
    let channel: Channel = super::cri::connect_channel(socket, timeout).await?;
    let mut grpc = Grpc::new(channel);
    let call_err = |source| RuntimeError::Call {
        endpoint: endpoint.clone(),
        op: "containerd_get",
        source: Box::new(source),
    };
    grpc.ready()
        .await
        .map_err(|e| call_err(tonic::Status::unavailable(e.to_string())))?;
    let mut request = tonic::Request::new(GetContainerRequest { id: id.to_owned() });
    let header = namespace.parse().map_err(|_| RuntimeError::Garbage {
        endpoint: endpoint.clone(),
        what: "containerd namespace is not a valid header value",
    })?;
    request
        .metadata_mut()
        .insert("containerd-namespace", header);
    let response: tonic::Response<GetContainerResponse> = match grpc
        .unary(
            request,
            PathAndQuery::from_static("/containerd.services.containers.v1.Containers/Get"),
            tonic_prost::ProstCodec::default(),
        )
        .await
    {
        Ok(response) => response,
        // CRI-O and cri-dockerd do not serve containerd's API at all.
        Err(status)
            if matches!(
                status.code(),
                tonic::Code::NotFound | tonic::Code::Unimplemented
            ) =>
        {
            return Ok(None);
        }
        Err(status) => return Err(call_err(status)),
    };
    let container = response
        .into_inner()
        .container
        .ok_or(RuntimeError::Garbage {
            endpoint,
            what: "containerd Get without a container",
        })?;
    let label = |key: &str| container.labels.get(key).cloned().unwrap_or_default();
    Ok(Some(ContainerMeta {
        name: container.id.clone(),
        image: container.image.clone(),
        container: label("io.kubernetes.container.name"),
        pod: label("io.kubernetes.pod.name"),
        namespace: label("io.kubernetes.pod.namespace"),
    }))
}
