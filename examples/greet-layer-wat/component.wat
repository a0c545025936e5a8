;; greet-layer-wat: a layer exporting `zerofn:greet/greeter`, written in the
;; component text format. `greet(name)` returns "hello, <name> (from greet-layer v1)\n".
;;
;; Memory is a bump allocator that is never freed: every request gets a fresh
;; instance, so everything is released when the request ends.
(component
  (core module $m
    (memory (export "memory") 1)
    ;; Results are written at 32 (pointer, length); allocations start at 4096.
    (global $next (mut i32) (i32.const 4096))
    (data (i32.const 64) "hello, ")
    (data (i32.const 96) " (from greet-layer v1)\n")

    ;; canonical ABI realloc: bump-allocate `new_size` bytes aligned to `align`,
    ;; copying the old block if there is one.
    (func $realloc (export "realloc")
      (param $old i32) (param $old_size i32) (param $align i32) (param $new_size i32)
      (result i32)
      (local $p i32)
      (local.set $p
        (i32.and
          (i32.add (global.get $next) (i32.sub (local.get $align) (i32.const 1)))
          (i32.sub (i32.const 0) (local.get $align))))
      (global.set $next (i32.add (local.get $p) (local.get $new_size)))
      (block $fits
        (br_if $fits
          (i32.le_u (global.get $next) (i32.mul (memory.size) (i32.const 65536))))
        (if (i32.eq
              (memory.grow
                (i32.add
                  (i32.shr_u
                    (i32.sub (global.get $next) (i32.mul (memory.size) (i32.const 65536)))
                    (i32.const 16))
                  (i32.const 1)))
              (i32.const -1))
          (then (unreachable))))
      (if (local.get $old)
        (then (memory.copy (local.get $p) (local.get $old) (local.get $old_size))))
      (local.get $p))

    ;; greet(name) -> "hello, " ++ name ++ suffix
    (func (export "greet") (param $ptr i32) (param $len i32) (result i32)
      (local $out i32)
      (local $total i32)
      (local.set $total (i32.add (i32.add (i32.const 7) (local.get $len)) (i32.const 23)))
      (local.set $out
        (call $realloc (i32.const 0) (i32.const 0) (i32.const 1) (local.get $total)))
      (memory.copy (local.get $out) (i32.const 64) (i32.const 7))
      (memory.copy (i32.add (local.get $out) (i32.const 7)) (local.get $ptr) (local.get $len))
      (memory.copy
        (i32.add (i32.add (local.get $out) (i32.const 7)) (local.get $len))
        (i32.const 96)
        (i32.const 23))
      (i32.store (i32.const 32) (local.get $out))
      (i32.store (i32.const 36) (local.get $total))
      (i32.const 32)))
  (core instance $i (instantiate $m))
  (func $greet (param "name" string) (result string)
    (canon lift (core func $i "greet")
      (memory (core memory $i "memory"))
      (realloc (core func $i "realloc"))))
  (instance $greeter (export "greet" (func $greet)))
  (export "zerofn:greet/greeter" (instance $greeter)))
