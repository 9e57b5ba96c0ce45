"""The node proxy: a TCP load balancer for every Service, on every node."""
