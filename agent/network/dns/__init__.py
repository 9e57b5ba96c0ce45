"""The node-local DNS server: Service names under cluster.local, the rest forwarded."""
