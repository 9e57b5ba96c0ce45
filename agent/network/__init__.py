"""Service networking on the node: the route table from the control plane
(`routes`), the Service proxy (`proxy/`, userspace or nftables), the cluster
DNS server (`dns/`), assembled by `stack`."""
