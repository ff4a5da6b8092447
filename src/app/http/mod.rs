//! HTTP/1.1 as sans-I/O state machines: bytes in, bytes out, time passed in.
//!
//! - [`HttpDate`]: the cached `Date` header value; one per core, updated
//!   once per loop iteration.

mod date;

pub use date::{HttpDate, HTTP_DATE_LEN};
