//! How a test answers the gRPC calls a filter opened: metadata, messages and a closing status, in
//! the order Envoy delivers them.

use crate::abi::http_calls::{GrpcCall, GrpcResponse};
use crate::codec::len_u32;
use crate::error::HostError;
use crate::vm::Vm;

impl Vm {
    /// gRPC calls and streams opened and not yet answered or cancelled, oldest first.
    pub fn pending_grpc_calls(&self) -> Vec<GrpcCall> {
        let grpc = &self.state().grpc;
        grpc.open
            .iter()
            .filter_map(|token| grpc.call(*token).cloned())
            .collect()
    }

    /// Answers gRPC call `token`: `proxy_on_grpc_receive_initial_metadata`, one
    /// `proxy_on_grpc_receive` per message, `proxy_on_grpc_receive_trailing_metadata`, then
    /// `proxy_on_grpc_close` with the status (readable with `proxy_get_status`).
    pub fn respond_to_grpc_call(
        &mut self,
        token: u32,
        response: GrpcResponse,
    ) -> Result<(), HostError> {
        let grpc = &self.state().grpc;
        let Some(call) = grpc
            .open
            .contains(&token)
            .then(|| grpc.call(token))
            .flatten()
            .cloned()
        else {
            return self.expectation(format!("no open gRPC call with token {token}"));
        };
        let context = call.context_id;
        if !self.is_live_context(context) {
            return self.expectation(format!(
                "gRPC call #{token} cannot be answered: its context has ended"
            ));
        }
        self.state_mut().grpc.open.retain(|t| *t != token);
        self.state_mut().grpc.to_close.retain(|(_, t)| *t != token);
        let metadata = |map: &crate::HeaderMap| len_u32(map.len());
        if !response.initial_metadata.is_empty() {
            let n = metadata(&response.initial_metadata);
            self.state_mut().grpc.delivering_metadata = Some(response.initial_metadata.clone());
            let result = self.invoke::<(u32, u32, u32), ()>(
                "proxy_on_grpc_receive_initial_metadata",
                context,
                (context, token, n),
            );
            self.state_mut().grpc.delivering_metadata = None;
            result?;
        }
        for message in &response.messages {
            let size = len_u32(message.len());
            self.state_mut().grpc.delivering_message = Some(message.clone());
            let result = self.invoke::<(u32, u32, u32), ()>(
                "proxy_on_grpc_receive",
                context,
                (context, token, size),
            );
            self.state_mut().grpc.delivering_message = None;
            result?;
        }
        if !response.trailing_metadata.is_empty() {
            let n = metadata(&response.trailing_metadata);
            self.state_mut().grpc.delivering_metadata = Some(response.trailing_metadata.clone());
            let result = self.invoke::<(u32, u32, u32), ()>(
                "proxy_on_grpc_receive_trailing_metadata",
                context,
                (context, token, n),
            );
            self.state_mut().grpc.delivering_metadata = None;
            result?;
        }
        self.state_mut().grpc.status = Some((response.status, response.status_message.clone()));
        let result = self.invoke::<(u32, u32, u32), ()>(
            "proxy_on_grpc_close",
            context,
            (context, token, response.status),
        );
        self.state_mut().grpc.status = None;
        result?;
        self.run_deferred()?;
        self.settle(())
    }
}
