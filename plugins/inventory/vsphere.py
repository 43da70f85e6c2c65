# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: vsphere
short_description: vSphere VMs as inventory hosts carrying the normalized VM spec
version_added: 0.2.0
description:
  - Reads every VM of a vCenter/ESXi host in a few PropertyCollector calls and adds each as an inventory host
    whose variable C(v2kvm_spec) is the same normalized VM spec the OVA path produces (docs/vm-spec.md,
    C(source.type=vsphere)).
  - Groups hosts by datacenter (C(vsphere_dc_<name>)), cluster (C(vsphere_cluster_<name>)), folder
    (C(vsphere_folder_<path>)), guest OS family and id (C(vsphere_os_<family>), C(vsphere_guest_<id>)),
    power state (C(vsphere_power_<state>)), custom attribute (C(vsphere_attr_<name>_<value>)) and the tags the
    SOAP API shows (C(ManagedEntity.tag), C(vsphere_tag_<key>)); more with C(keyed_groups)/C(groups).
  - Host variables C(vsphere_attributes) (custom attribute name to value) and C(vsphere_tags) carry the same.
    The tags of the vSphere Client (tag categories) belong to the vAPI REST service, which this plugin does not
    read; custom attributes are the SOAP way to mark migration waves.
  - VMs whose spec cannot be built (a name breaking the spec's name rule, no disks) land in group
    C(vsphere_unmigratable) with C(v2kvm_spec_error) saying why and how to fix it.
  - The password is never written to the inventory, the cache or any message.
  - The inventory file must end in C(vsphere.yml) or C(vsphere.yaml).
options:
  plugin:
    description: Marks the file as this plugin's.
    required: true
    choices: [v2kvm.migrate.vsphere]
    type: str
  hostname:
    description: vCenter or ESXi host.
    type: str
    required: true
    env:
      - name: VMWARE_HOST
  username:
    description: Account to log in with.
    type: str
    required: true
    env:
      - name: VMWARE_USER
  password:
    description: Password of O(username); use Ansible Vault or E(VMWARE_PASSWORD).
    type: str
    required: true
    env:
      - name: VMWARE_PASSWORD
  port:
    description: HTTPS port of the vSphere API.
    type: int
    default: 443
    env:
      - name: VMWARE_PORT
  validate_certs:
    description: Verify the server's TLS certificate.
    type: bool
    default: true
    env:
      - name: VMWARE_VALIDATE_CERTS
  timeout:
    description: Seconds to wait for one answer of the API.
    type: int
    default: 60
  filters:
    description:
      - JMESPath expressions evaluated against each host's variables (C(v2kvm_spec), C(vsphere_*)); a VM is kept
        only when every expression is true, for example V(v2kvm_spec.source.power_state == 'poweredOn') or
        V(vsphere_attributes.wave == '3').
    type: list
    elements: str
    default: []
  group_prefix:
    description: Prefix of the default group names.
    type: str
    default: vsphere_
extends_documentation_fragment:
  - constructed
author:
  - v2kvm.migrate developers (@v2kvm)
"""

EXAMPLES = r"""
# inventory/prod.vsphere.yml (password from VMWARE_PASSWORD or vault)
plugin: v2kvm.migrate.vsphere
hostname: vcenter.example.com
username: migrator@vsphere.local
filters:
  - "v2kvm_spec.guest_os.family == 'linux'"
  - "!contains(v2kvm_spec.source.folder, 'templates')"
keyed_groups:
  - key: v2kvm_spec.firmware
    prefix: firmware
"""

import re  # noqa: E402

from ansible.errors import AnsibleError, AnsibleParserError  # noqa: E402
from ansible.plugins.inventory import BaseInventoryPlugin, Constructable  # noqa: E402

try:
    import jmespath

    HAS_JMESPATH = True
except ImportError:
    HAS_JMESPATH = False


def _group_part(text):
    return re.sub(r"[^A-Za-z0-9_]", "_", str(text or "none")).strip("_") or "none"


class InventoryModule(BaseInventoryPlugin, Constructable):
    NAME = "v2kvm.migrate.vsphere"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("vsphere.yml", "vsphere.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        from ansible_collections.v2kvm.migrate.plugins.module_utils import _vsphere_conn as vconn

        if not vconn.HAS_PYVMOMI:
            raise AnsibleParserError("the vsphere inventory needs pyVmomi: pip install pyvmomi")
        filters = self.get_option("filters") or []
        if filters and not HAS_JMESPATH:
            raise AnsibleParserError("filters need the jmespath library: pip install jmespath")
        password = self.get_option("password")
        try:
            hosts = collect_hosts(self.get_option("hostname"), self.get_option("username"), password,
                                  self.get_option("port"), self.get_option("validate_certs"),
                                  self.get_option("timeout"))
        except vconn.SourceError as exc:
            raise AnsibleError(vconn.scrub(exc, [password])) from None
        compiled = []
        for expression in filters:
            try:
                compiled.append((expression, jmespath.compile(expression)))
            except jmespath.exceptions.JMESPathError as exc:
                raise AnsibleParserError("filter %r is not valid JMESPath: %s" % (expression, exc)) from None
        prefix = self.get_option("group_prefix")
        strict = self.get_option("strict")
        for host_name, host_vars, groups in hosts:
            if not all(expr.search(host_vars) for unused, expr in compiled):
                continue
            self.inventory.add_host(host_name)
            for key, value in host_vars.items():
                self.inventory.set_variable(host_name, key, value)
            for group in groups:
                group_name = self.inventory.add_group(prefix + group)
                self.inventory.add_child(group_name, host_name)
            self._set_composite_vars(self.get_option("compose"), host_vars, host_name, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), host_vars, host_name, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), host_vars, host_name, strict=strict)


def collect_hosts(hostname, username, password, port, validate_certs, timeout):
    """[(inventory host name, host vars, default group suffixes)] for every VM (also used by bench/)."""
    from ansible_collections.v2kvm.migrate.plugins.module_utils import _vsphere_conn as vconn
    from ansible_collections.v2kvm.migrate.plugins.module_utils import _vsphere_spec as vspec

    out = []
    with vconn.connect(hostname, username, password, port=port, validate_certs=validate_certs,
                       timeout=timeout) as conn:
        vms, tree, portgroups = vspec.collect(conn)
        field_names = vspec.custom_field_names(conn)
        names = [props.get("name") for unused, props in vms]
        for ref, props in vms:
            place = vspec.placement(tree, props)
            name = props.get("name") or ref._moId
            host_name = name if names.count(name) == 1 else "%s_%s" % (name, ref._moId)
            attributes, tags = vspec.attributes_and_tags(props, field_names)
            host_vars = {"vsphere_moid": ref._moId, "vsphere_path": place["path"], "vsphere_vcenter": conn.host,
                         "vsphere_attributes": attributes, "vsphere_tags": tags}
            groups = ["dc_" + _group_part(place["datacenter"]), "power_" + _group_part(props.get("runtime.powerState"))]
            groups += ["attr_%s_%s" % (_group_part(key), _group_part(value)) for key, value in attributes.items()]
            groups += ["tag_" + _group_part(tag) for tag in tags]
            if place["cluster"]:
                groups.append("cluster_" + _group_part(place["cluster"]))
            if place["folder"]:
                groups.append("folder_" + _group_part(place["folder"]))
            try:
                spec = vspec.build_spec(ref, props, place, conn.host, portgroups=portgroups)
            except vconn.SourceError as exc:
                host_vars["v2kvm_spec"] = None
                host_vars["v2kvm_spec_error"] = str(exc)
                groups.append("unmigratable")
            else:
                host_vars["v2kvm_spec"] = spec
                groups += ["os_" + spec["guest_os"]["family"], "guest_" + _group_part(spec["guest_os"]["id"])]
            out.append((host_name, host_vars, groups))
    return out
