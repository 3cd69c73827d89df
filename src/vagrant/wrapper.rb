# metalab's run-scoped wrapper around a lab's own Vagrantfile. metalab writes this file for each
# run and points VAGRANT_VAGRANTFILE at it; Vagrant's working directory stays the lab's, so the
# lab's file is loaded unchanged, relative paths and all. Around it, this file:
#
# - gives every libvirt name the run creates the run's prefix (METALAB_NAME_PREFIX): domains
#   (vagrant-libvirt's default_prefix) and the private networks vagrant-libvirt would create, so
#   two runs of one lab never collide and `metalab reap` finds what a run left by name alone
#   (disks go to metalab's storage pool, METALAB_STORAGE_POOL, unless the lab names a pool);
# - boots the VMs with the accelerator the host really has (METALAB_ACCEL=tcg: software
#   emulation, where a KVM guest would hang), whatever the lab's file assumes;
# - leaves alone the networks that already exist on the host (METALAB_HOST_NETWORKS: shared
#   infrastructure, such as the management network), and never lets a run destroy them;
# - with METALAB_DESCRIBE set, writes each machine's box, networks and provisioners there as
#   JSON, as Vagrant resolved them: what metalab plans with;
# - polls for a new VM's address every 0.2 s instead of backing off to 2 s (no change to the VMs);
# - lets only the run into a VM booted straight from its kernel (metalab's box): the run's key
#   (METALAB_SSH_PUBKEY) goes on the kernel command line, Vagrant logs in with its private half
#   (METALAB_SSH_KEY) and inserts none of its own, and the serial console goes to a file in
#   METALAB_CONSOLE_DIR, where the box announces its host key (see src/vm/access.rs);
# - in an untrusted run (METALAB_TAP_PREFIX set), names every network interface's tap device on
#   the host after the run, which is what the run's firewall keys on (src/host/fence.rs), and
#   refuses the interfaces it cannot name (public networks, tunnels): they would bypass it.
#
# Env: METALAB_LAB_VAGRANTFILE (the lab's file), METALAB_NAME_PREFIX, METALAB_HOST_NETWORKS
# (comma-separated), METALAB_ACCEL, METALAB_DESCRIBE (a path), METALAB_SSH_KEY,
# METALAB_SSH_PUBKEY, METALAB_CONSOLE_DIR, METALAB_TAP_PREFIX.
require "ipaddr"
require "json"
require "zlib"

# Loaded once per Vagrant process, however many environments it makes.
unless defined?(MetalabWrapper)
module MetalabWrapper
  PREFIX = ENV.fetch("METALAB_NAME_PREFIX", "")
  HOST_NETWORKS = ENV.fetch("METALAB_HOST_NETWORKS", "").split(",")
  DESCRIBE = ENV["METALAB_DESCRIBE"]
  TCG = ENV["METALAB_ACCEL"] == "tcg"
  POOL = ENV.fetch("METALAB_STORAGE_POOL", "default")
  SSH_KEY = ENV["METALAB_SSH_KEY"]
  SSH_PUBKEY = ENV["METALAB_SSH_PUBKEY"]
  CONSOLE_DIR = ENV["METALAB_CONSOLE_DIR"]
  TAPS = ENV["METALAB_TAP_PREFIX"]
  @described = {}

  # A lab metalab will not run, said as Vagrant says its own errors (no backtrace).
  class Refused < Vagrant::Errors::VagrantError
    def initialize(text)
      @text = text
      super()
    end

    def error_message
      @text
    end
  end

  # Puts the run's names into a machine's resolved configuration, and describes it.
  def self.adjust(machine, result)
    config = result[:config]
    emulate(config) if TCG
    scope(config) unless PREFIX.empty?
    run_key(machine, config) if SSH_KEY && SSH_PUBKEY
    fence(machine, config) if TAPS
    describe(machine, config, result[:box]) if DESCRIBE
  end

  # An untrusted run's VMs have only interfaces whose taps metalab names: the management network
  # and private networks. A public network (macvtap) or a tunnel has no tap to fence.
  def self.fence(machine, config)
    config.vm.networks.each do |type, opts|
      next if type == :forwarded_port
      next if type == :private_network && !tunnel?(opts)
      kind = tunnel?(opts) ? "a #{tunnel?(opts)} tunnel" : "a #{type}"
      raise Refused, "metalab: #{machine} has #{kind}: an untrusted run fences its VMs by their " \
        "tap devices, and allows only private networks"
    end
    install_tap_names
  end

  # The tap of a machine's interface number `index`: the run's prefix, a hash of the machine's
  # name, the index (at most 15 characters, Linux's limit).
  def self.tap_name(machine, index)
    name = format("%s%04x%d", TAPS, Zlib.crc32(machine.to_s) & 0xffff, index)
    raise Refused, "metalab: tap name #{name} is too long" if name.length > 15
    name
  end

  # vagrant-libvirt names a tap only when the interface says `iface_name`, which its management
  # network cannot: every interface it attaches gets one here.
  def self.install_tap_names
    return if @taps_named
    require "vagrant-libvirt/action"
    VagrantPlugins::ProviderLibvirt::Action::CreateNetworkInterfaces.prepend(NamedTaps)
    @taps_named = true
  end

  module NamedTaps
    def configured_networks(env, logger)
      super.each_with_index.map do |opts, index|
        opts.merge(iface_name: MetalabWrapper.tap_name(env[:machine].name, index))
      end
    end
  end

  # Only a box booted from its kernel takes the key (on its command line): other boxes keep
  # Vagrant's own key handling, and their host key is pinned on first contact.
  def self.run_key(machine, config)
    libvirt = config.vm.get_provider_config(:libvirt)
    cmdline = libvirt && libvirt.cmd_line
    return unless cmdline.is_a?(String) && !cmdline.empty?
    libvirt.cmd_line = "#{cmdline} metalab.ssh_key=#{SSH_PUBKEY}"
    config.ssh.private_key_path = [SSH_KEY]
    config.ssh.insert_key = false
    config.ssh.keys_only = true
    return unless CONSOLE_DIR
    console = File.join(CONSOLE_DIR, "#{PREFIX}#{machine}.log")
    libvirt.serials = [{ type: "file", source: { path: console } }]
  end

  def self.scope(config)
    libvirt = config.vm.get_provider_config(:libvirt)
    if libvirt
      libvirt.default_prefix = PREFIX
      libvirt.management_network_keep = true # shared by every run on the host
      # Disks go where metalab's sweeps look, unless the lab chose a pool of its own.
      libvirt.snapshot_pool_name = POOL if libvirt.snapshot_pool_name == "default"
      libvirt.storage_pool_name = POOL if libvirt.storage_pool_name == "default"
    end
    config.vm.networks.each do |type, opts|
      next unless type == :private_network && !tunnel?(opts)
      name = network_name(opts)
      if name && HOST_NETWORKS.include?(name)
        opts[:libvirt__always_destroy] = false
        next
      end
      base = name || default_network_name(opts)
      next if base.nil? || base.start_with?(PREFIX)
      opts.delete(:network_name)
      opts[:libvirt__network_name] = PREFIX + base
    end
  end

  def self.emulate(config)
    libvirt = config.vm.get_provider_config(:libvirt)
    return unless libvirt
    libvirt.driver = "qemu"
    libvirt.cpu_mode = "custom"
    libvirt.cpu_model = "qemu64"
  end

  def self.tunnel?(opts)
    opts[:libvirt__tunnel_type] || opts[:tunnel_type]
  end

  def self.network_name(opts)
    opts[:libvirt__network_name] || opts[:network_name]
  end

  def self.dhcp?(opts)
    opts[:type].to_s == "dhcp" && opts[:ip].nil?
  end

  # The name vagrant-libvirt gives a network it creates when the Vagrantfile names none.
  def self.default_network_name(opts)
    return "vagrant-private-dhcp" if dhcp?(opts)
    sub = subnet(opts)
    sub && "net-" + sub.tr("./", "--")
  end

  # The network a private network's addresses come from, as vagrant-libvirt works it out.
  def self.subnet(opts)
    address = opts[:ip] || (dhcp?(opts) && (opts[:libvirt__network_address] || "172.28.128.0"))
    return nil unless address
    mask = opts[:libvirt__netmask] || opts[:netmask]
    net = if address.include?("/") && !mask
            IPAddr.new(address)
          else
            IPAddr.new("#{address.split('/').first}/#{mask || '255.255.255.0'}")
          end
    "#{net}/#{net.prefix}"
  rescue IPAddr::Error
    nil
  end

  def self.describe(machine, config, box)
    networks = config.vm.networks.select { |type, _| type == :private_network }.map do |_, opts|
      {
        name: network_name(opts),
        ip: opts[:ip],
        dhcp: dhcp?(opts),
        subnet: subnet(opts),
        shared: opts[:libvirt__always_destroy] == false,
        auto_config: opts.fetch(:auto_config, true),
      }
    end
    @described[machine.to_s] = {
      box: config.vm.box,
      box_version: config.vm.box_version,
      box_found: box && { name: box.name, version: box.version.to_s, directory: box.directory.to_s },
      hostname: config.vm.hostname,
      networks: networks,
      provisioners: config.vm.provisioners.map { |p| { name: (p.name || p.type).to_s, type: p.type.to_s } },
    }
    File.write(DESCRIBE, JSON.generate(@described))
  end
end

class Vagrant::Vagrantfile
  prepend(Module.new do
    def machine_config(name, provider, boxes, data_path = nil, validate_provider = true)
      result = super
      MetalabWrapper.adjust(name, result)
      result
    end
  end)
end
end

begin
  require "fog/core"
  Fog.interval = 0.2 if Fog.respond_to?(:interval=)
rescue LoadError
  # no vagrant-libvirt here: nothing to tune
end

# Vagrant's own housekeeping (`vagrant global-status --prune`, `vagrant box remove`) loads every
# indexed environment, this one too, outside the run: there is no lab then, and no machine of the
# run, so Vagrant forgets the run's entries rather than failing on them.
lab = ENV.fetch("METALAB_LAB_VAGRANTFILE", "")
load lab unless lab.empty?

# Makes sure every machine has a libvirt configuration of its own to put the prefix into.
Vagrant.configure("2") do |config|
  config.vm.provider(:libvirt) { |_| }
end
