"""A Kubernetes API emulator for the sandbox: the API server, its controllers, a kubelet and the apps.

Run it with `python -m sandbox.kube --port P --state FILE` (see `__main__.py`). One process
serves several clusters under `/clusters/<name>/...`, each with its own objects, resource
versions, controllers, pods and load balancers. It answers in the shapes the official
`kubernetes` client (typed and dynamic) deserializes, and rejects what a real API server
rejects where the tool could get it wrong (names, stale writes, apply conflicts).

Layers, each a small module:
  app            HTTP: routing, bearer auth, content types -> ClusterApi
  api            the verbs (create/get/list/watch/replace/patch/apply/delete, subresources)
  store          objects, resource versions, watch fan-out, the state file
  resources      the resource types served, built in and from CRDs
  discovery      /version, /api, /apis documents
  schema         list merge keys and atomic fields (shared by strategic merge and apply)
  patch, apply   merge / strategic merge / JSON patch; server-side apply and managedFields
  defaults, validation   what the API server fills in and refuses
  controller     deployments, replica sets, garbage collection, namespaces, statuses
  kubelet        pods: CSI secret mounts, image pulls, start, probes, crash loops, events
  images, secrets_store  the pluggable image checker / pull authorizer / secret reader
  network, httpserver, workloads   the apps: per-revision HTTP servers, LoadBalancer and Ingress ports
"""

from sandbox.kube.config import EmulatorConfig
from sandbox.kube.kubeconfig import build_kubeconfig

__all__ = ["EmulatorConfig", "build_kubeconfig"]
