//! VRRP for real: halb pairs, halb beside a real keepalived, split brain,
//! tracking and notify, and malformed adverts, each on its own LAN of
//! namespaces. One test binary, so the long interop holds run side by side.

mod vrrp;
