//! The build manifest written next to the image (what determined the output, and its digests).
