//! Raw AdmissionReview bytes through `/validate` and `/mutate` with the Bookinfo
//! snapshot and default settings (the seed corpus: the captured reviews).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtls_guard::settings::Settings;

fuzz_target!(|body: &[u8]| {
    mtls_guard_fuzz::check_review(mtls_guard_fuzz::bookinfo(), &Settings::default(), body);
});
