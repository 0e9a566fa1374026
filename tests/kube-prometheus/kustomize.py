"""kustomize, the subset deploy/, dashboards/ and examples/ use, for validate.py.

kustomize itself has no Debian, PyPI or npm package, so the tests build overlays
with this: resources (files and directories), components, configMapGenerator
(files, namespace, options.labels, disableNameSuffixHash), patches (JSON 6902, by
path, with a target), images, namespace. Anything else fails loudly instead of
being ignored. Its output was compared by hand with kustomize 5.5's
(docs/testing.md).
"""
import pathlib
import sys

import yaml


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


KNOWN_KEYS = {"apiVersion", "kind", "metadata", "resources", "components", "configMapGenerator",
              "patches", "images", "namespace"}
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "Namespace", "CustomResourceDefinition"}


def load_kustomization(directory):
    path = directory / "kustomization.yaml"
    if not path.exists():
        fail(f"{directory} has no kustomization.yaml")
    k = yaml.safe_load(path.read_text())
    unknown = set(k) - KNOWN_KEYS
    if unknown:
        fail(f"{path}: {sorted(unknown)} not handled by the test's kustomize")
    return k


def resource_objects(directory, entry):
    path = (directory / entry).resolve()
    if path.is_dir():
        return build(path)
    if not path.exists():
        fail(f"{directory}: resource {entry} does not exist")
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def generate_config_map(directory, gen):
    options = gen.get("options", {})
    if options.get("disableNameSuffixHash") is not True:
        fail(f"{directory}: configMapGenerator {gen['name']}: name hashes not handled")
    data = {}
    for f in gen.get("files", []):
        key, _, rel = f.rpartition("=")
        path = (directory / rel).resolve()
        if directory.resolve() not in path.parents:
            fail(f"{directory}: {rel} is outside the kustomization (kustomize refuses it)")
        data[key or path.name] = path.read_text()
    meta = {"name": gen["name"]}
    if "namespace" in gen:
        meta["namespace"] = gen["namespace"]
    if options.get("labels"):
        meta["labels"] = dict(options["labels"])
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def matches(obj, target):
    group, _, version = obj["apiVersion"].rpartition("/")
    return all([
        target.get("kind", obj["kind"]) == obj["kind"],
        target.get("name", obj["metadata"]["name"]) == obj["metadata"]["name"],
        target.get("group", group) == group,
        target.get("version", version) == version,
    ])


def apply_layer(directory, k, objects):
    import jsonpatch

    for gen in k.get("configMapGenerator", []):
        objects.append(generate_config_map(directory, gen))
    for component in k.get("components", []):
        cdir = (directory / component).resolve()
        ck = load_kustomization(cdir)
        if ck.get("kind") != "Component":
            fail(f"{cdir} is not a Component")
        for entry in ck.get("resources", []):
            objects.extend(resource_objects(cdir, entry))
        apply_layer(cdir, ck, objects)
    for patch in k.get("patches", []):
        if "path" not in patch or "target" not in patch:
            fail(f"{directory}: only patches with a path and a target are handled")
        ops = yaml.safe_load((directory / patch["path"]).read_text())
        if not isinstance(ops, list):
            fail(f"{directory}: {patch['path']}: strategic merge patches not handled")
        for i, obj in enumerate(objects):
            if matches(obj, patch["target"]):
                try:
                    objects[i] = jsonpatch.apply_patch(obj, ops)
                except jsonpatch.JsonPatchException as e:
                    fail(f"{directory}: {patch['path']} on {obj['kind']}/{obj['metadata']['name']}: {e}")
    for image in k.get("images", []):
        for obj in objects:
            pod = obj.get("spec", {}).get("template", {}).get("spec", {})
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                name = c["image"].split("@")[0].rsplit(":", 1)[0] if ":" in c["image"].split("/")[-1] else c["image"]
                if name == image["name"]:
                    c["image"] = image.get("newName", name) + ":" + str(image["newTag"])


def build(directory):
    """`kustomize build directory` for the subset described above."""
    directory = pathlib.Path(directory)
    k = load_kustomization(directory)
    if k.get("kind", "Kustomization") != "Kustomization":
        fail(f"{directory} is a {k.get('kind')}, not buildable on its own")
    objects = []
    for entry in k.get("resources", []):
        objects.extend(resource_objects(directory, entry))
    apply_layer(directory, k, objects)
    if "namespace" in k:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = k["namespace"]
            if obj["kind"] == "ClusterRoleBinding":
                for subject in obj.get("subjects", []):
                    if subject.get("kind") == "ServiceAccount":
                        subject["namespace"] = k["namespace"]
    return objects
