//! Shared data and shared queues, backed by the VM's [`SharedStore`](crate::SharedStore):
//! `proxy_{get,set}_shared_data`, `proxy_{register,resolve,enqueue,dequeue}_shared_queue`.

use crate::guest::{self, Caller};
use crate::shared::SetError;
use crate::state::HostState;
use crate::types::Status;
use wasmtime::{Linker, Result};

pub(crate) fn link(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap("env", "proxy_get_shared_data", get_shared_data)?;
    linker.func_wrap("env", "proxy_set_shared_data", set_shared_data)?;
    linker.func_wrap("env", "proxy_register_shared_queue", register_queue)?;
    linker.func_wrap("env", "proxy_resolve_shared_queue", resolve_queue)?;
    linker.func_wrap("env", "proxy_enqueue_shared_queue", enqueue)?;
    linker.func_wrap("env", "proxy_dequeue_shared_queue", dequeue)?;
    Ok(())
}

fn get_shared_data(
    mut caller: Caller<'_>,
    key_ptr: u32,
    key_len: u32,
    return_data: u32,
    return_size: u32,
    return_cas: u32,
) -> Result<u32> {
    let key = guest::read_string(&caller, key_ptr, key_len)?;
    let Some((value, cas)) = caller.data().shared.lock().get_data(&key) else {
        return Ok(Status::NotFound.raw());
    };
    guest::return_bytes(&mut caller, &value, return_data, return_size)?;
    guest::write_u32(&mut caller, return_cas, cas)?;
    Ok(Status::Ok.raw())
}

fn set_shared_data(
    caller: Caller<'_>,
    key_ptr: u32,
    key_len: u32,
    value_ptr: u32,
    value_len: u32,
    cas: u32,
) -> Result<u32> {
    let key = guest::read_string(&caller, key_ptr, key_len)?;
    let value = guest::read(&caller, value_ptr, value_len)?;
    // Removal (`remove_shared_data`) arrives as an empty value: ABI 0.2.1 stores it as such.
    match caller.data().shared.lock().set_data(&key, value, cas) {
        Ok(()) => Ok(Status::Ok.raw()),
        Err(SetError::CasMismatch) => Ok(Status::CasMismatch.raw()),
    }
}

fn register_queue(
    mut caller: Caller<'_>,
    name_ptr: u32,
    name_len: u32,
    return_id: u32,
) -> Result<u32> {
    let name = guest::read_string(&caller, name_ptr, name_len)?;
    let state = caller.data();
    let id = state
        .shared
        .lock()
        .register_queue(&state.config.vm_id, &name, state.vm_index);
    guest::write_u32(&mut caller, return_id, id)?;
    Ok(Status::Ok.raw())
}

fn resolve_queue(
    mut caller: Caller<'_>,
    vm_id_ptr: u32,
    vm_id_len: u32,
    name_ptr: u32,
    name_len: u32,
    return_id: u32,
) -> Result<u32> {
    let vm_id = guest::read_string(&caller, vm_id_ptr, vm_id_len)?;
    let name = guest::read_string(&caller, name_ptr, name_len)?;
    let Some(id) = caller.data().shared.lock().resolve_queue(&vm_id, &name) else {
        return Ok(Status::NotFound.raw());
    };
    guest::write_u32(&mut caller, return_id, id)?;
    Ok(Status::Ok.raw())
}

fn enqueue(caller: Caller<'_>, id: u32, value_ptr: u32, value_len: u32) -> Result<u32> {
    let value = guest::read(&caller, value_ptr, value_len)?;
    if caller.data().shared.lock().enqueue(id, value) {
        Ok(Status::Ok.raw())
    } else {
        Ok(Status::NotFound.raw())
    }
}

fn dequeue(mut caller: Caller<'_>, id: u32, return_data: u32, return_size: u32) -> Result<u32> {
    let item = caller.data().shared.lock().dequeue(id);
    match item {
        None => Ok(Status::NotFound.raw()),
        Some(None) => Ok(Status::Empty.raw()),
        Some(Some(item)) => {
            guest::return_bytes(&mut caller, &item, return_data, return_size)?;
            Ok(Status::Ok.raw())
        }
    }
}
