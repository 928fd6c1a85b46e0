//! The filter configuration parser (`on_configure`): any bytes give a configuration or an error naming the field,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = keymesh_core::FilterConfig::parse(data);
});
