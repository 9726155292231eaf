# The smallest useful setup: two VMs with Bulkhead's defaults for everything else.
{
  vms = [
    { name = "work"; color = "#3060ff"; }
    { name = "banking"; color = "#2ecc71"; }
  ];
}
