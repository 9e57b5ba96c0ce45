"""Leader election over the store, and the fenced view the leader writes through.

Every replica of the control plane serves the API; one at a time, elected
through a key bound to an etcd lease, runs the scheduler and the controllers.
A lease only says who is *probably* alive, so the leader's writes also carry
its term as a fence (see `controlplane.store.base.Fence`): a paused or cut-off
ex-leader cannot change anything once another replica's term has begun.

    lease.py     pure: when to renew, when a lease must be presumed gone
    elector.py   the shell: campaign, keep the lease alive, watch the key, step down
    testhooks.py the store the leader writes through (fenced), and the test-only
                 switches that change it (fencing off, writes held in flight)
"""
