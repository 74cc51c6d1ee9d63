//! `multiversion!`: compiles a generic function body for AVX-512 and for AVX2+FMA and picks
//! one at run time (the crate itself targets baseline x86-64, whose SSE2 cannot blend or
//! multiply 64-bit lanes, so hot loops would not vectorise). Off x86-64, the plain body.
//!
//! `multiversion!(name, generic_fn, Bound, FnPointerType<T>, (arg: Type, ...))` defines
//! `fn name<T: Bound>() -> FnPointerType<T>`. With a leading `fma`, `generic_fn` takes a second
//! parameter `const FMA: bool`: true in the AVX-512 and AVX2+FMA builds and off x86-64
//! (where `f32::mul_add` is an instruction), false in baseline x86-64 (where it is a libm call).

macro_rules! multiversion {
    (fma $name:ident, $generic:ident, $bound:path, $ty:ty, ($($arg:ident : $argty:ty),*)) => {
        multiversion!(@impl $name, $generic, $bound, $ty, ($($arg: $argty),*), [T, true], [T, { cfg!(not(target_arch = "x86_64")) }]);
    };
    ($name:ident, $generic:ident, $bound:path, $ty:ty, ($($arg:ident : $argty:ty),*)) => {
        multiversion!(@impl $name, $generic, $bound, $ty, ($($arg: $argty),*), [T], [T]);
    };
    (@impl $name:ident, $generic:ident, $bound:path, $ty:ty, ($($arg:ident : $argty:ty),*), [$($fast:tt)*], [$($base:tt)*]) => {
        fn $name<T: $bound>() -> $ty {
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
                    // SAFETY: selected only when the CPU reports these features.
                    unsafe { v4::<T>($($arg),*) }
                }
                #[allow(clippy::too_many_arguments)]
                fn v3_safe<T: $bound>($($arg: $argty),*) {
                    // SAFETY: selected only when the CPU reports these features.
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
