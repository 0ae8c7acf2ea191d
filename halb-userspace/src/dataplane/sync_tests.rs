//! The sync on in-memory maps: ids across reloads and restarts, what a
//! packet would see, and how much of a ring each change writes.

use std::{collections::BTreeMap, net::SocketAddr};

use super::*;
use crate::{config, dataplane::writer::MemoryMaps};

const RING: u32 = 251;

/// A config with one full-NAT service "web" over `backends` (last octets).
fn services(backends: &[u8]) -> Vec<ServiceConfig> {
    let mut text = String::from(
        "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\nsnat_address = \"198.18.0.2\"\n",
    );
    for b in backends {
        text += &format!("[[service.backend]]\naddress = \"198.18.1.{b}\"\n");
    }
    config::from_str(&text).expect("valid config").services
}

fn addr(last: u8) -> SocketAddr {
    format!("198.18.1.{last}:80").parse().unwrap()
}

/// Backend address -> id, as the sync holds it.
fn ids(sync: &Sync) -> BTreeMap<SocketAddr, u32> {
    sync.service("web")
        .expect("web applied")
        .backends
        .iter()
        .map(|b| (SocketAddr::new(b.config.address, b.config.port), b.id))
        .collect()
}

/// Backend address -> share of the live ring, as a packet would see it.
fn ring_shares(maps: &MemoryMaps, sync: &Sync) -> BTreeMap<SocketAddr, usize> {
    let web = sync.service("web").expect("web applied");
    let by_id: BTreeMap<u32, SocketAddr> = ids(sync).into_iter().map(|(a, i)| (i, a)).collect();
    let mut shares = BTreeMap::new();
    for id in maps.live_ring(&web.key, RING) {
        let addr = by_id
            .get(&id)
            .unwrap_or_else(|| panic!("ring names unknown id {id}"));
        *shares.entry(*addr).or_default() += 1;
    }
    shares
}

#[test]
fn a_new_backend_listed_first_gets_an_id_of_its_own_and_its_share() {
    let mut maps = MemoryMaps::default();
    let mut sync = Sync::new(RING);
    sync.apply(&mut maps, &services(&[12, 13])).unwrap();
    let before = ids(&sync);
    sync.apply(&mut maps, &services(&[11, 12, 13])).unwrap();
    let after = ids(&sync);
    assert_eq!(after[&addr(12)], before[&addr(12)]);
    assert_eq!(after[&addr(13)], before[&addr(13)]);
    let distinct: BTreeSet<u32> = after.values().copied().collect();
    assert_eq!(distinct.len(), 3, "ids collide: {after:?}");
    let shares = ring_shares(&maps, &sync);
    assert_eq!(shares.len(), 3, "every backend is in the ring: {shares:?}");
    assert!(shares[&addr(11)] > RING as usize / 5, "{shares:?}");
    // The map entry of each id is the backend the sync says it is.
    for (a, id) in &after {
        let b = maps.backends[id];
        assert_eq!(ip_from_be(&b.addr_be, b.family), a.ip());
    }
}

#[test]
fn a_restart_after_reloads_keeps_every_id_and_the_live_ring() {
    let mut maps = MemoryMaps::default();
    let mut sync = Sync::new(RING);
    // Three reloads that add, remove and reorder backends.
    sync.apply(&mut maps, &services(&[11, 12, 13])).unwrap();
    sync.apply(&mut maps, &services(&[12, 13])).unwrap();
    sync.apply(&mut maps, &services(&[14, 12, 13])).unwrap();
    sync.apply(&mut maps, &services(&[13, 14, 12])).unwrap();
    let ids_before = ids(&sync);
    let service_before = maps.services.clone();
    let ring_before = ring_shares(&maps, &sync);
    let live_before = maps.live_ring(&sync.service("web").unwrap().key, RING);

    // kill -9 and a restart: a new sync adopts the same maps.
    let mut restarted = Sync::adopt(&maps, RING).unwrap();
    let written = maps.ring_slots_written;
    restarted
        .apply(&mut maps, &services(&[13, 14, 12]))
        .unwrap();
    assert_eq!(ids(&restarted), ids_before);
    assert_eq!(maps.services, service_before, "same id, same live ring");
    assert_eq!(ring_shares(&maps, &restarted), ring_before);
    assert_eq!(
        maps.live_ring(&restarted.service("web").unwrap().key, RING),
        live_before
    );
    assert_eq!(maps.ring_slots_written, written, "nothing to rewrite");

    // And the restarted agent goes on reloading without collisions.
    restarted
        .apply(&mut maps, &services(&[15, 13, 14, 12]))
        .unwrap();
    let now = ids(&restarted);
    let distinct: BTreeSet<u32> = now.values().copied().collect();
    assert_eq!(distinct.len(), 4, "{now:?}");
    for a in [13, 14, 12] {
        assert_eq!(now[&addr(a)], ids_before[&addr(a)]);
    }
}

#[test]
fn an_id_freed_by_a_reload_is_not_given_to_the_next_new_backend() {
    let mut maps = MemoryMaps::default();
    let mut sync = Sync::new(RING);
    sync.apply(&mut maps, &services(&[11, 12, 13])).unwrap();
    let removed = ids(&sync)[&addr(11)];
    sync.apply(&mut maps, &services(&[12, 13])).unwrap();
    sync.apply(&mut maps, &services(&[12, 13, 14])).unwrap();
    assert_ne!(ids(&sync)[&addr(14)], removed);
    assert_eq!(
        maps.backends[&removed],
        Backend::default(),
        "freed slot cleared"
    );
}

#[test]
fn a_health_change_writes_only_the_slots_that_change_in_one_batch() {
    let mut maps = MemoryMaps::default();
    let mut sync = Sync::new(RING);
    sync.apply(&mut maps, &services(&[11, 12, 13, 14])).unwrap();
    // The first two switches write each ring whole once.
    sync.set_backend_state(&mut maps, "web", addr(11), BackendState::Down)
        .unwrap();
    let (slots, batches) = (maps.ring_slots_written, maps.ring_batches);
    // Back up: the spare ring still holds the table from before, so the
    // switch writes nothing.
    sync.set_backend_state(&mut maps, "web", addr(11), BackendState::Up)
        .unwrap();
    assert_eq!(maps.ring_slots_written, slots, "nothing to write");
    assert_eq!(maps.ring_batches, batches);
    sync.set_backend_state(&mut maps, "web", addr(12), BackendState::Down)
        .unwrap();
    let written = maps.ring_slots_written - slots;
    assert_eq!(maps.ring_batches - batches, 1, "one batch per change");
    // Maglev moves about a quarter of the slots per change here, plus the
    // spare's own difference; far from the whole ring.
    assert!(written < RING as usize * 3 / 4, "{written} slots written");
    assert!(written > 0);
    let shares = ring_shares(&maps, &sync);
    assert!(!shares.contains_key(&addr(12)), "{shares:?}");
    assert!(shares.contains_key(&addr(11)), "{shares:?}");
}

#[test]
fn a_drain_survives_a_restart_and_a_removed_service_is_cleared() {
    let mut maps = MemoryMaps::default();
    let mut sync = Sync::new(RING);
    sync.apply(&mut maps, &services(&[11, 12])).unwrap();
    sync.set_backend_state(&mut maps, "web", addr(12), BackendState::Draining)
        .unwrap();
    let mut restarted = Sync::adopt(&maps, RING).unwrap();
    restarted.apply(&mut maps, &services(&[11, 12])).unwrap();
    assert_eq!(restarted.draining(), vec![("web".to_owned(), addr(12))]);

    let mut emptied = Sync::adopt(&maps, RING).unwrap();
    emptied.apply(&mut maps, &[]).unwrap();
    assert!(maps.services.is_empty());
    assert!(maps.vips.is_empty());
    assert!(maps.backends().unwrap().is_empty());
}

#[test]
fn a_prepared_reload_writes_nothing_until_committed_and_then_what_apply_would() {
    let mut maps = MemoryMaps::default();
    let mut sync = Sync::new(RING);
    sync.apply(&mut maps, &services(&[11, 12])).unwrap();
    let before = (
        maps.services.clone(),
        maps.backends.clone(),
        maps.rings.clone(),
    );
    let prepared = sync.prepare(&maps, &services(&[13, 11, 12])).unwrap();
    assert_eq!(
        (
            maps.services.clone(),
            maps.backends.clone(),
            maps.rings.clone()
        ),
        before,
        "prepare wrote into the maps"
    );
    assert_eq!(ids(&sync).len(), 2, "prepare changed the record");

    let mut direct = maps.clone();
    let mut direct_sync = sync.clone();
    direct_sync
        .apply(&mut direct, &services(&[13, 11, 12]))
        .unwrap();
    sync.commit(&mut maps, prepared).unwrap();
    assert_eq!(ids(&sync), ids(&direct_sync));
    assert_eq!(maps.services, direct.services);
    assert_eq!(maps.backends, direct.backends);
    assert_eq!(maps.rings, direct.rings);
}

#[test]
fn two_nodes_with_the_same_backends_show_the_same_table_digest_whatever_their_ids() {
    // Node a learnt its backends in another order (other ids) than node b.
    let (mut maps_a, mut maps_b) = (MemoryMaps::default(), MemoryMaps::default());
    let (mut a, mut b) = (Sync::new(RING), Sync::new(RING));
    a.apply(&mut maps_a, &services(&[13])).unwrap();
    a.apply(&mut maps_a, &services(&[11, 12, 13])).unwrap();
    b.apply(&mut maps_b, &services(&[11, 12, 13])).unwrap();
    assert_ne!(ids(&a), ids(&b));
    let digest = |s: &Sync| s.service("web").expect("web").digest.clone();
    assert_eq!(digest(&a), digest(&b));
    assert_eq!(digest(&a).len(), 16);
    // A backend down on one node only: the tables differ, and so do the digests.
    a.set_backend_state(&mut maps_a, "web", addr(12), BackendState::Down)
        .unwrap();
    assert_ne!(digest(&a), digest(&b));
}
