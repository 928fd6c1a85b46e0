//! The `wasi_snapshot_preview1` functions a `wasm32-wasip1` filter imports: stdout/stderr captured
//! into the VM's output, environment and arguments from the VM builder, clocks from the virtual
//! clock, a seeded deterministic `random_get`, no files, and `proc_exit` as a trap.

use crate::guest::{self, Caller};
use crate::state::HostState;
use wasmtime::{bail, Linker, Result};

const MODULE: &str = "wasi_snapshot_preview1";
const SUCCESS: u32 = 0;
const BADF: u32 = 8;
const INVAL: u32 = 28;
const SPIPE: u32 = 70;
/// `filetype::character_device`.
const CHARACTER_DEVICE: u8 = 2;

pub(crate) fn link(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(MODULE, "fd_write", fd_write)?;
    linker.func_wrap(MODULE, "fd_close", |_: Caller<'_>, fd: u32| -> u32 {
        if fd <= 2 {
            SUCCESS
        } else {
            BADF
        }
    })?;
    linker.func_wrap(
        MODULE,
        "fd_seek",
        |_: Caller<'_>, fd: u32, _: i64, _: u32, _: u32| -> u32 {
            if fd <= 2 {
                SPIPE
            } else {
                BADF
            }
        },
    )?;
    linker.func_wrap(MODULE, "fd_fdstat_get", fd_fdstat_get)?;
    // No preopened directories: std stops probing at the first EBADF.
    linker.func_wrap(
        MODULE,
        "fd_prestat_get",
        |_: Caller<'_>, _: u32, _: u32| -> u32 { BADF },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_prestat_dir_name",
        |_: Caller<'_>, _: u32, _: u32, _: u32| -> u32 { BADF },
    )?;
    linker.func_wrap(
        MODULE,
        "environ_sizes_get",
        |mut caller: Caller<'_>, count: u32, size: u32| {
            let env = environ(caller.data());
            sizes_get(&mut caller, &env, count, size)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "environ_get",
        |mut caller: Caller<'_>, pointers: u32, buffer: u32| {
            let env = environ(caller.data());
            strings_get(&mut caller, &env, pointers, buffer)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "args_sizes_get",
        |mut caller: Caller<'_>, count: u32, size: u32| {
            let args = caller.data().config.args.clone();
            sizes_get(&mut caller, &args, count, size)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "args_get",
        |mut caller: Caller<'_>, pointers: u32, buffer: u32| {
            let args = caller.data().config.args.clone();
            strings_get(&mut caller, &args, pointers, buffer)
        },
    )?;
    linker.func_wrap(MODULE, "clock_time_get", clock_time_get)?;
    linker.func_wrap(
        MODULE,
        "clock_res_get",
        |mut caller: Caller<'_>, _: u32, resolution: u32| -> Result<u32> {
            guest::write_u64(&mut caller, resolution, 1)?;
            Ok(SUCCESS)
        },
    )?;
    linker.func_wrap(MODULE, "random_get", random_get)?;
    linker.func_wrap(MODULE, "sched_yield", |_: Caller<'_>| -> u32 { SUCCESS })?;
    linker.func_wrap(
        MODULE,
        "proc_exit",
        |_: Caller<'_>, code: u32| -> Result<()> { bail!("filter called proc_exit({code})") },
    )?;
    Ok(())
}

fn environ(state: &HostState) -> Vec<String> {
    state
        .config
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

fn sizes_get(caller: &mut Caller<'_>, strings: &[String], count: u32, size: u32) -> Result<u32> {
    let total: usize = strings.iter().map(|s| s.len() + 1).sum();
    guest::write_u32(caller, count, u32::try_from(strings.len())?)?;
    guest::write_u32(caller, size, u32::try_from(total)?)?;
    Ok(SUCCESS)
}

/// Writes NUL-terminated `strings` into `buffer` and their addresses into `pointers`.
fn strings_get(
    caller: &mut Caller<'_>,
    strings: &[String],
    pointers: u32,
    buffer: u32,
) -> Result<u32> {
    let mut at = buffer;
    for (index, string) in strings.iter().enumerate() {
        guest::write_u32(caller, pointers + 4 * u32::try_from(index)?, at)?;
        let mut bytes = string.as_bytes().to_vec();
        bytes.push(0);
        guest::write(caller, at, &bytes)?;
        at += u32::try_from(bytes.len())?;
    }
    Ok(SUCCESS)
}

fn fd_write(
    mut caller: Caller<'_>,
    fd: u32,
    iovs: u32,
    iovs_len: u32,
    nwritten: u32,
) -> Result<u32> {
    if fd != 1 && fd != 2 {
        return Ok(BADF);
    }
    let mut written = Vec::new();
    for index in 0..iovs_len {
        let iov = guest::read(&caller, iovs + index * 8, 8)?;
        let ptr = u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
        let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        written.extend(guest::read(&caller, ptr, len)?);
    }
    let count = u32::try_from(written.len())?;
    let output = &mut caller.data_mut().output;
    if fd == 1 {
        &mut output.stdout
    } else {
        &mut output.stderr
    }
    .extend(written);
    guest::write_u32(&mut caller, nwritten, count)?;
    Ok(SUCCESS)
}

fn fd_fdstat_get(mut caller: Caller<'_>, fd: u32, stat: u32) -> Result<u32> {
    if fd > 2 {
        return Ok(BADF);
    }
    // struct fdstat { u8 filetype; u16 flags; u64 rights_base; u64 rights_inheriting } = 24 bytes.
    let mut bytes = [0u8; 24];
    bytes[0] = CHARACTER_DEVICE;
    bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    guest::write(&mut caller, stat, &bytes)?;
    Ok(SUCCESS)
}

fn clock_time_get(mut caller: Caller<'_>, clock: u32, _precision: u64, time: u32) -> Result<u32> {
    let clocks = &caller.data().clock;
    let value = match clock {
        0 => clocks.now,
        1..=3 => clocks.monotonic(),
        _ => return Ok(INVAL),
    };
    guest::write_u64(&mut caller, time, value)?;
    Ok(SUCCESS)
}

fn random_get(mut caller: Caller<'_>, buffer: u32, len: u32) -> Result<u32> {
    let mut bytes = Vec::with_capacity(len as usize);
    let state = caller.data_mut();
    while bytes.len() < len as usize {
        bytes.extend_from_slice(&splitmix64(&mut state.rng).to_le_bytes());
    }
    bytes.truncate(len as usize);
    guest::write(&mut caller, buffer, &bytes)?;
    Ok(SUCCESS)
}

/// SplitMix64: deterministic, seedable, good enough for a test RNG.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
