//! The shared datastore (sqlite, etcd, Kubernetes) behind one typed,
//! compare-and-swap interface. Built by the datastore issue; nothing lives
//! here yet.
