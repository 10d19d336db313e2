# Loads a Homebrew formula against a minimal stand-in for Homebrew's Formula DSL and prints what it declared, as
# JSON. Not Homebrew: it proves the file is Ruby that defines the expected class and DSL calls, nothing about
# brew's own validation (brew audit) or the install.
require "json"

module Language
  module Python
    module Virtualenv
    end
  end
end

class Formula
  @@declared = { "depends_on" => [], "on_linux" => { "depends_on" => [] }, "on_macos" => { "depends_on" => [] } }
  @@scope = nil

  def self.declared = @@declared

  %w[desc homepage url sha256 license].each do |name|
    define_singleton_method(name) { |value| @@declared[name] = value }
  end

  def self.depends_on(dep)
    (@@scope ? @@declared[@@scope] : @@declared)["depends_on"] << dep
  end

  def self.on_linux(&block) = within("on_linux", &block)
  def self.on_macos(&block) = within("on_macos", &block)

  def self.within(scope)
    @@scope = scope
    yield
  ensure
    @@scope = nil
  end

  def self.test(&block)
    @@declared["test_block"] = !block.nil?
  end
end

load ARGV.fetch(0)
klass = Object.const_get("Rcc")
out = Formula.declared.merge(
  "superclass" => klass.superclass.name,
  "includes_virtualenv" => klass.include?(Language::Python::Virtualenv),
  "instance_methods" => (klass.instance_methods(false) + klass.private_instance_methods(false)).map(&:to_s).sort,
)
puts JSON.generate(out)
