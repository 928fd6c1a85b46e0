//! The root context: configuration, the answers to token requests (all dispatched from here), and the tick that
//! serves requests waiting for a token another worker gets.

use crate::host;
use crate::http::EgressHttp;
use crate::worker::Worker;
use keymesh_core::egress::EgressConfig;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::rc::Rc;

pub(crate) struct EgressRoot {
    context_id: u32,
    worker: Option<Rc<Worker>>,
}

impl EgressRoot {
    pub(crate) fn new(context_id: u32) -> Self {
        Self {
            context_id,
            worker: None,
        }
    }
}

impl Context for EgressRoot {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body_size: usize, _: usize) {
        if let Some(worker) = &self.worker {
            worker.answered(token, headers, body_size);
        }
    }
}

impl RootContext for EgressRoot {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        true
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(bytes) = host::plugin_configuration().filter(|b| !b.is_empty()) else {
            log::error!("refusing configuration: the plugin configuration is empty");
            return false;
        };
        match EgressConfig::parse(&bytes) {
            Ok(config) => {
                self.worker = Some(Rc::new(Worker::new(config, self.context_id)));
                true
            }
            Err(e) => {
                log::error!("refusing configuration: {e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(worker) = &self.worker {
            worker.tick();
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(EgressHttp::new(context_id, self.worker.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
