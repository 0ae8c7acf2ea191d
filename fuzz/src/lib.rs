//! What the fuzz targets share: how each one reads its fuzz bytes (the
//! seed writer uses the same layouts) and the independent checks that tell
//! a wrong answer from a right one, beyond "it did not panic".

pub mod advert;
pub mod announce;
pub mod request;
pub mod rules;
