"""The scheduler's pure core: which node should each pending pod run on?

The scheduler is a pipeline of tiny plugins, in the manner of Kubernetes'
scheduling framework and Nomad's feasibility and rank iterators:

- `snapshot` turns Node and Pod protos into plain, frozen values
  (`NodeInfo`, `PodRequest`) and holds them in a `Snapshot` that can account
  for placements made earlier in the same pass (`Snapshot.with_binding`).
- `framework` defines the extension points: a `FilterPlugin` answers "may this
  pod run on this node?" with a `Status` that names the reason for a "no"; a
  `ScorePlugin` ranks the feasible nodes from 0 to 100. A `Profile` lists the
  filters cheap-first and the scores with their weights.
- `plugins` holds one module per plugin and the registry from plugin name to
  plugin; `plugins.default_profile()` is the profile corral runs by default.
- `pipeline` is the algorithm: sample nodes from a rotating start, filter,
  score, pick the best; or explain, in one sentence, why no node fits.

Everything here is pure: no asyncio, gRPC, sockets, files or clocks. The async
shell that watches the store and writes bindings lives elsewhere and feeds this
package plain data.
"""
