//! Time and contexts: `proxy_get_current_time_nanoseconds`, `proxy_set_tick_period_milliseconds`,
//! `proxy_set_effective_context`, `proxy_done`, and `proxy_call_foreign_function` (unsupported).

use crate::guest::{self, Caller};
use crate::state::HostState;
use crate::types::Status;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wasmtime::{Linker, Result};

/// The VM's virtual clock and tick timer. Time only moves when the test advances it.
pub(crate) struct Clock {
    /// Wall-clock time, nanoseconds since the Unix epoch.
    pub(crate) now: u64,
    /// `now` when the VM was created; the monotonic clock counts from here.
    pub(crate) origin: u64,
    pub(crate) tick_period: Option<Duration>,
    /// When the next tick is due (nanoseconds since the epoch).
    pub(crate) next_tick: Option<u64>,
}

impl Clock {
    pub(crate) fn starting_at(start: SystemTime) -> Clock {
        let now = nanos(start.duration_since(UNIX_EPOCH).unwrap_or_default());
        Clock {
            now,
            origin: now,
            tick_period: None,
            next_tick: None,
        }
    }

    pub(crate) fn system_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.now)
    }

    pub(crate) fn monotonic(&self) -> u64 {
        self.now.saturating_sub(self.origin)
    }

    /// Envoy re-arms the tick timer one period from now whenever the period is set.
    pub(crate) fn set_tick_period(&mut self, period: Duration) {
        if period.is_zero() {
            self.tick_period = None;
            self.next_tick = None;
        } else {
            self.tick_period = Some(period);
            self.next_tick = Some(self.now.saturating_add(nanos(period)));
        }
    }
}

pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

pub(crate) fn link(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap("env", "proxy_get_current_time_nanoseconds", current_time)?;
    linker.func_wrap("env", "proxy_set_tick_period_milliseconds", set_tick_period)?;
    linker.func_wrap("env", "proxy_set_effective_context", set_effective_context)?;
    linker.func_wrap("env", "proxy_done", done)?;
    linker.func_wrap("env", "proxy_call_foreign_function", call_foreign_function)?;
    Ok(())
}

fn current_time(mut caller: Caller<'_>, return_time: u32) -> Result<u32> {
    let now = caller.data().clock.now;
    guest::write_u64(&mut caller, return_time, now)?;
    Ok(Status::Ok.raw())
}

fn set_tick_period(mut caller: Caller<'_>, period_ms: u32) -> Result<u32> {
    caller
        .data_mut()
        .clock
        .set_tick_period(Duration::from_millis(u64::from(period_ms)));
    Ok(Status::Ok.raw())
}

fn set_effective_context(mut caller: Caller<'_>, context_id: u32) -> Result<u32> {
    let state = caller.data_mut();
    let known = (context_id != 0 && context_id == state.root_context_id)
        || state.streams.contains_key(&context_id);
    if !known {
        return Ok(Status::BadArgument.raw());
    }
    state.current_context = context_id;
    Ok(Status::Ok.raw())
}

fn done(mut caller: Caller<'_>) -> Result<u32> {
    caller.data_mut().done_calls += 1;
    Ok(Status::Ok.raw())
}

fn call_foreign_function(
    mut caller: Caller<'_>,
    name_ptr: u32,
    name_len: u32,
    _arguments_ptr: u32,
    _arguments_len: u32,
    _return_data: u32,
    _return_size: u32,
) -> Result<u32> {
    let name = guest::read_string(&caller, name_ptr, name_len)?;
    caller.data_mut().violate(format!(
        "proxy_call_foreign_function(\"{name}\"): foreign functions are not supported"
    ));
    Ok(Status::NotFound.raw())
}
