// Benchmark-only shim (NOT for production): haraka-net-utils classifies
// 127/8 as "private", and haraka-plugin-dns-list and haraka-plugin-greylist
// skip private peers. All benchmark traffic comes from 127.0.0.1, so mark
// the peer public to make those plugins actually run their checks.
exports.hook_connect_init = function (next, connection) {
  connection.remote.is_private = false
  connection.remote.is_local = false
  next()
}
