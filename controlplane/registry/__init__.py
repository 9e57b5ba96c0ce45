"""The service registry: Services and their EndpointSlices as routes for node proxies."""
