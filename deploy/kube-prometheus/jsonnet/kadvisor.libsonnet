// kadvisor addon for kube-prometheus: runs kadvisor on every node, scrapes it in
// place of the kubelet's cAdvisor endpoint, and adds kadvisor's dashboards.
//
//   local kp = (import 'kube-prometheus/main.libsonnet') +
//              (import 'kadvisor/deploy/kube-prometheus/jsonnet/kadvisor.libsonnet') +
//              { values+:: { common+: { namespace: 'monitoring' } } };
//   { ['kadvisor-' + name]: kp.kadvisor[name] for name in std.objectFields(kp.kadvisor) }
//   + ... (the rest of kube-prometheus' example.jsonnet)
//
// `kadvisor/` is this repository, vendored whole (docs/kube-prometheus.md shows how):
// the addon reads ../base, ../dropin, ../own-job and ../../../dashboards.
//
// values.kadvisor.mode:
//   'dropin' (default, mode A): kadvisor's series carry job="kubelet" and
//            metrics_path="/metrics/cadvisor"; rules, alerts, dashboards and
//            prometheus-adapter need no change.
//   'ownJob' (mode B): kadvisor's series carry job="kadvisor"; the mixin's
//            cadvisorSelector is set to match, so its rules and dashboards are
//            regenerated for it (as are kadvisor's own dashboards).
// In both modes the kubelet ServiceMonitor loses its /metrics/cadvisor endpoint.
//
// The Kubernetes objects are the plain YAML of ../base, ../dropin and ../own-job
// (one source for kubectl, kustomize and jsonnet users), parsed with
// std.parseYaml; the dashboards are ../../../dashboards/*.json.
//
// Needs go-jsonnet >= 0.18 (the `jsonnet` kube-prometheus' own build uses). The C++
// jsonnet 0.18 (Debian's `jsonnet` package) cannot run it: its std.parseYaml emits
// invalid JSON for any scalar such as 0.1.0 or 127.0.0.1, quoted or not, and aborts.
local yaml(text) = std.parseYaml(text);

// The image named in ../base/kustomization.yaml (`images:`), the one place it is set.
local kustomizeImage = yaml(importstr '../base/kustomization.yaml').images[0];

// A string's JSON escaping without the surrounding quotes.
local escaped(text) = local quoted = std.escapeStringJson(text); std.substr(quoted, 1, std.length(quoted) - 2);

local kubeletCadvisorSelector = 'job="kubelet", metrics_path="/metrics/cadvisor"';
local ownJobSelector = 'job="kadvisor", metrics_path="/metrics/cadvisor"';

// Rewrites a dashboard's cAdvisor selector (written for mode A) to `selector`.
local dashboard(text, selector) =
  std.parseJson(std.strReplace(text, escaped(kubeletCadvisorSelector), escaped(selector)));

{
  values+:: {
    kadvisor: {
      namespace: $.values.common.namespace,
      mode: 'dropin',
      image: kustomizeImage.newName + ':' + kustomizeImage.newTag,
      kubeRbacProxyImage: 'quay.io/brancz/kube-rbac-proxy:v0.19.1',
      cadvisorSelector: if self.mode == 'dropin' then kubeletCadvisorSelector else ownJobSelector,
      resources: {},
    },
    kubernetesControlPlane+: {
      mixin+: {
        _config+: if $.values.kadvisor.mode == 'ownJob' then { cadvisorSelector: ownJobSelector } else {},
      },
    },
    grafana+: {
      dashboards+: {
        'kadvisor-containers.json': dashboard(importstr '../../../dashboards/kadvisor-containers.json', $.values.kadvisor.cadvisorSelector),
        'kadvisor-cost.json': dashboard(importstr '../../../dashboards/kadvisor-cost.json', $.values.kadvisor.cadvisorSelector),
      },
    },
  },

  kubernetesControlPlane+: {
    serviceMonitorKubelet+: {
      spec+: {
        endpoints: [
          e
          for e in super.endpoints
          if std.get(e, 'path', '/metrics') != '/metrics/cadvisor'
        ],
      },
    },
  },

  kadvisor: {
    local v = $.values.kadvisor,
    local namespaced(o) = o { metadata+: { namespace: v.namespace } },
    assert std.member(['dropin', 'ownJob'], v.mode) : "values.kadvisor.mode must be 'dropin' or 'ownJob'",

    serviceAccount: namespaced(yaml(importstr '../base/serviceAccount.yaml')),
    clusterRole: yaml(importstr '../base/clusterRole.yaml'),
    clusterRoleBinding: yaml(importstr '../base/clusterRoleBinding.yaml') {
      subjects: [s { namespace: v.namespace } for s in super.subjects],
    },
    kubeRbacProxyConfig: namespaced(yaml(importstr '../base/kubeRbacProxyConfig.yaml')),
    daemonSet: namespaced(yaml(importstr '../base/daemonset.yaml')) {
      spec+: {
        template+: {
          spec+: {
            containers: [
              if c.name == 'kadvisor' then
                c { image: v.image } + (if v.resources != {} then { resources: v.resources } else {})
              else if c.name == 'kube-rbac-proxy' then c { image: v.kubeRbacProxyImage }
              else c
              for c in super.containers
            ],
          },
        },
      },
    },
    service: namespaced(yaml(importstr '../base/service.yaml')),
    networkPolicy: namespaced(yaml(importstr '../base/networkPolicy.yaml')),
    serviceMonitor: namespaced(
      if v.mode == 'dropin' then yaml(importstr '../dropin/serviceMonitor.yaml')
      else yaml(importstr '../own-job/serviceMonitor.yaml')
    ),
  },
}
