"""The endpoints controller: a Service's pods as EndpointSlices."""
