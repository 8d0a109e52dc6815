//! The lab runner: builds containerlab topologies from network namespaces,
//! veth pairs and bridges, without Docker. Built by the agent-and-lab issue
//! on top of [`crate::netns`].
