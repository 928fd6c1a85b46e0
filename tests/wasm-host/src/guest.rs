//! Access to guest memory from host functions: reading the filter's arguments and handing data back
//! the way Envoy does, in a buffer the filter allocates with `proxy_on_memory_allocate` (or `malloc`)
//! and then owns.

use crate::state::HostState;
use wasmtime::{format_err, Memory, Result};

/// A host function's view of the store.
pub(crate) type Caller<'a> = wasmtime::Caller<'a, HostState>;

fn memory(caller: &Caller<'_>) -> Result<Memory> {
    caller
        .data()
        .guest
        .memory
        .ok_or_else(|| format_err!("filter module has no `memory` export"))
}

/// Copies `len` bytes at `ptr` out of guest memory; out-of-bounds traps the guest.
pub(crate) fn read(caller: &Caller<'_>, ptr: u32, len: u32) -> Result<Vec<u8>> {
    let memory = memory(caller)?;
    let start = ptr as usize;
    let end = start
        .checked_add(len as usize)
        .ok_or_else(|| format_err!("guest buffer {ptr:#x}+{len} overflows"))?;
    let bytes = memory
        .data(caller)
        .get(start..end)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| format_err!("guest buffer {ptr:#x}+{len} is out of bounds"))?;
    let read = &caller.data().meter.bytes_in;
    read.set(read.get() + u64::from(len));
    Ok(bytes)
}

/// Like [`read`], decoding UTF-8 lossily (names, messages, paths).
pub(crate) fn read_string(caller: &Caller<'_>, ptr: u32, len: u32) -> Result<String> {
    Ok(String::from_utf8_lossy(&read(caller, ptr, len)?).into_owned())
}

/// Writes `bytes` at `ptr`.
pub(crate) fn write(caller: &mut Caller<'_>, ptr: u32, bytes: &[u8]) -> Result<()> {
    let memory = memory(caller)?;
    memory
        .write(&mut *caller, ptr as usize, bytes)
        .map_err(|_| format_err!("guest pointer {ptr:#x}+{} is out of bounds", bytes.len()))
}

/// Writes a little-endian `u32` at `ptr` (a `*mut u32` or `*mut usize` out-parameter).
pub(crate) fn write_u32(caller: &mut Caller<'_>, ptr: u32, value: u32) -> Result<()> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Writes a little-endian `u64` at `ptr`.
pub(crate) fn write_u64(caller: &mut Caller<'_>, ptr: u32, value: u64) -> Result<()> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Returns `data` to the guest: allocates a guest buffer, copies `data` in, and stores its address and
/// size at `ptr_ptr`/`size_ptr`. Empty data is returned as a null pointer, which the SDK reads as
/// "no value" (Envoy's `get_buffer_bytes` does the same for zero-length results).
pub(crate) fn return_bytes(
    caller: &mut Caller<'_>,
    data: &[u8],
    ptr_ptr: u32,
    size_ptr: u32,
) -> Result<()> {
    if data.is_empty() {
        write_u32(caller, ptr_ptr, 0)?;
        return write_u32(caller, size_ptr, 0);
    }
    let size = u32::try_from(data.len())
        .map_err(|_| format_err!("{} bytes do not fit a wasm32 guest", data.len()))?;
    let allocate = caller.data().guest.allocate.clone().ok_or_else(|| {
        format_err!("filter module exports neither `proxy_on_memory_allocate` nor `malloc`")
    })?;
    let fuel_before = caller.get_fuel().ok();
    let ptr = allocate.call(&mut *caller, size)?;
    let spent = fuel_before
        .zip(caller.get_fuel().ok())
        .map_or(0, |(before, after)| before.saturating_sub(after));
    let meter = &mut caller.data_mut().meter;
    meter.allocations += 1;
    meter.allocation_instructions += spent;
    meter.bytes_out += u64::from(size);
    if ptr == 0 {
        return Err(format_err!(
            "guest allocator returned null for {size} bytes"
        ));
    }
    write(caller, ptr, data)?;
    write_u32(caller, ptr_ptr, ptr)?;
    write_u32(caller, size_ptr, size)
}
