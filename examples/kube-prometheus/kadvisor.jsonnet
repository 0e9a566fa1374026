// kube-prometheus with kadvisor in place of the kubelet's cAdvisor endpoint, with
// kadvisor's dashboards (docs/kube-prometheus.md): kube-prometheus' example.jsonnet
// plus the addon. Build with go-jsonnet, with this repository checked out as
// kadvisor/ in DIR:
//   jsonnet -J vendor -J DIR -m manifests kadvisor.jsonnet
// (kube-prometheus' build.sh runs the same with its example.jsonnet).
local kp = (import 'kube-prometheus/main.libsonnet') +
           (import 'kadvisor/deploy/kube-prometheus/jsonnet/kadvisor.libsonnet') +
           { values+:: { common+: { namespace: 'monitoring' } } };

{ ['kadvisor-' + name]: kp.kadvisor[name] for name in std.objectFields(kp.kadvisor) } +
{ ['kubernetes-' + name]: kp.kubernetesControlPlane[name] for name in std.objectFields(kp.kubernetesControlPlane) } +
{ ['grafana-' + name]: kp.grafana[name] for name in std.objectFields(kp.grafana) }
// + the other components of kube-prometheus' example.jsonnet, unchanged
