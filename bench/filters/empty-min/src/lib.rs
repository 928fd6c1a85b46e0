//! The price of any wasm HTTP filter in Envoy: a module with nothing but what proxy-wasm-cpp-host needs to load
//! it and run it on a stream.
//!
//! proxy-wasm-cpp-host (`WasmBase::load`, `getFunctions`) refuses a module without a `proxy_abi_version_*` export
//! or without an allocator (`malloc`, else `proxy_on_memory_allocate`); every `proxy_on_*` callback is optional and
//! is only called when exported. So this module exports the ABI marker, the allocator, `proxy_on_context_create`
//! (called for the root context and for each stream) and `proxy_on_request_headers` (answers Continue), and
//! nothing else: no response, body, log or done callbacks, no WASI start function, no standard library.
#![cfg_attr(target_arch = "wasm32", no_std)]

/// Marks the module as proxy-wasm ABI 0.2.1. Never called.
#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Nothing is ever passed to this module that it keeps, so one 64 KiB page grown per call is enough to make the
/// host's copies land somewhere valid (the host only allocates for calls this module never makes).
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    grow(size)
}

#[cfg(target_arch = "wasm32")]
fn grow(size: usize) -> *mut u8 {
    let pages = size.div_ceil(65_536).max(1);
    let old = core::arch::wasm32::memory_grow(0, pages);
    if old == usize::MAX {
        return core::ptr::null_mut();
    }
    (old * 65_536) as *mut u8
}

#[cfg(not(target_arch = "wasm32"))]
fn grow(_size: usize) -> *mut u8 {
    core::ptr::null_mut()
}

/// Root and stream contexts need no state.
#[no_mangle]
pub extern "C" fn proxy_on_context_create(_context_id: u32, _parent_context_id: u32) {}

/// `Continue` (0) for every request.
#[no_mangle]
pub extern "C" fn proxy_on_request_headers(
    _context_id: u32,
    _headers: u32,
    _end_of_stream: u32,
) -> u32 {
    0
}

#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}
