//! `multiversion!`: compiles a generic function body for AVX-512 and for AVX2+FMA and picks
//! one at run time (the crate itself targets baseline x86-64, whose SSE2 cannot blend or
//! multiply 64-bit lanes, so hot loops would not vectorise). Off x86-64, the plain body.
//!
//! `multiversion!(name, generic_fn, Bound, FnPointerType<T>, (arg: Type, ...))` defines
//! `fn name<T: Bound>() -> FnPointerType<T>` (a leading visibility, e.g. `pub(super)`, is
//! given to it). With a leading `fma`, `generic_fn` takes a second
//! parameter `const FMA: bool`: true in the AVX-512 and AVX2+FMA builds and off x86-64
//! (where `f32::mul_add` is an instruction), false in baseline x86-64 (where it is a libm call).

macro_rules! multiversion {
    ($vis:vis fma $name:ident, $generic:ident, $bound:path, $ty:ty, ($($arg:ident : $argty:ty),*)) => {
        multiversion!(@impl $vis $name, $generic, $bound, $ty, ($($arg: $argty),*), [T, true], [T, { cfg!(not(target_arch = "x86_64")) }]);
    };
    ($vis:vis $name:ident, $generic:ident, $bound:path, $ty:ty, ($($arg:ident : $argty:ty),*)) => {
        multiversion!(@impl $vis $name, $generic, $bound, $ty, ($($arg: $argty),*), [T], [T]);
    };
    (@impl $vis:vis $name:ident, $generic:ident, $bound:path, $ty:ty, ($($arg:ident : $argty:ty),*), [$($fast:tt)*], [$($base:tt)*]) => {
        $vis fn $name<T: $bound>() -> $ty {
            #[cfg(target_arch = "x86_64")]
            {
                #[allow(clippy::too_many_arguments)]
                #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")]
                unsafe fn v4<T: $bound>($($arg: $argty),*) {
                    $generic::<$($fast)*>($($arg),*)
                }
                #[allow(clippy::too_many_arguments)]
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3<T: $bound>($($arg: $argty),*) {
                    $generic::<$($fast)*>($($arg),*)
                }
                #[allow(clippy::too_many_arguments)]
                fn v4_safe<T: $bound>($($arg: $argty),*) {
                    // SAFETY: `v4` is unsafe only for its target features; this wrapper is
                    // returned below only after `is_x86_feature_detected!` reported every one
                    // of them (avx512f/dq/vl/bw; avx2 and fma come with them).
                    unsafe { v4::<T>($($arg),*) }
                }
                #[allow(clippy::too_many_arguments)]
                fn v3_safe<T: $bound>($($arg: $argty),*) {
                    // SAFETY: `v3` is unsafe only for its target features; this wrapper is
                    // returned below only after avx2 and fma were detected.
                    unsafe { v3::<T>($($arg),*) }
                }
                if std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512dq")
                    && std::is_x86_feature_detected!("avx512vl")
                    && std::is_x86_feature_detected!("avx512bw")
                {
                    return v4_safe::<T>;
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    return v3_safe::<T>;
                }
            }
            $generic::<$($base)*>
        }
    };
}
