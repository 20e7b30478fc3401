/* hwbench STREAM-method kernel: a variant of the STREAM benchmark code by John D. McCalpin
 * (https://www.cs.virginia.edu/stream/), written for pytest-hwbench. Results from it are "based on a
 * variant of the STREAM benchmark code", not official STREAM results.
 *
 * Same method as stream.c 5.10: the four kernels Copy (c=a), Scale (b=s*c), Add (c=a+b), Triad (a=b+s*c)
 * on three arrays of doubles, each run NTIMES times; the best time of each kernel, excluding the first
 * iteration, gives the rate, counting 2 (Copy, Scale) or 3 (Add, Triad) arrays of bytes moved per element;
 * rates in MB/s (10^6 bytes). Differences: the array size and NTIMES are command-line arguments (so one
 * cached binary serves every size), timing uses CLOCK_MONOTONIC, and the table format is stream.c's.
 * Threads: OpenMP, OMP_NUM_THREADS. Usage: hwbench-stream ARRAY_ELEMENTS NTIMES
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define HLINE "-------------------------------------------------------------\n"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s ARRAY_ELEMENTS NTIMES\n", argv[0]);
        return 2;
    }
    long n = atol(argv[1]);
    int ntimes = atoi(argv[2]);
    if (n < 1000 || ntimes < 2) {
        fprintf(stderr, "error: need ARRAY_ELEMENTS >= 1000 and NTIMES >= 2 (got %s %s)\n", argv[1], argv[2]);
        return 2;
    }
    double *a, *b, *c, *times;
    if (posix_memalign((void **)&a, 64, n * sizeof(double)) || posix_memalign((void **)&b, 64, n * sizeof(double))
        || posix_memalign((void **)&c, 64, n * sizeof(double))
        || !(times = malloc(4 * (size_t)ntimes * sizeof(double)))) {
        fprintf(stderr, "error: cannot allocate 3 arrays of %ld doubles (%.1f MiB each)\n", n,
                n * sizeof(double) / 1048576.0);
        return 3;
    }
    int threads = 1;
#ifdef _OPENMP
#pragma omp parallel
#pragma omp master
    threads = omp_get_num_threads();
#endif
    /* First touch in parallel, so pages land on the NUMA node of the thread that uses them. */
#pragma omp parallel for
    for (long j = 0; j < n; j++) { a[j] = 1.0; b[j] = 2.0; c[j] = 0.0; }
    const double scalar = 3.0;
    for (int k = 0; k < ntimes; k++) {
        double t = now();
#pragma omp parallel for
        for (long j = 0; j < n; j++) c[j] = a[j];
        times[0 * ntimes + k] = now() - t;
        t = now();
#pragma omp parallel for
        for (long j = 0; j < n; j++) b[j] = scalar * c[j];
        times[1 * ntimes + k] = now() - t;
        t = now();
#pragma omp parallel for
        for (long j = 0; j < n; j++) c[j] = a[j] + b[j];
        times[2 * ntimes + k] = now() - t;
        t = now();
#pragma omp parallel for
        for (long j = 0; j < n; j++) a[j] = b[j] + scalar * c[j];
        times[3 * ntimes + k] = now() - t;
    }
    static const char *label[4] = {"Copy:      ", "Scale:     ", "Add:       ", "Triad:     "};
    const double bytes[4] = {2.0 * sizeof(double) * n, 2.0 * sizeof(double) * n, 3.0 * sizeof(double) * n,
                             3.0 * sizeof(double) * n};
    printf(HLINE);
    printf("hwbench STREAM-method kernel 1 (a variant of the STREAM benchmark code)\n");
    printf(HLINE);
    printf("This system uses %d bytes per array element.\n", (int)sizeof(double));
    printf(HLINE);
    printf("Array size = %ld (elements), Offset = 0 (elements)\n", n);
    printf("Memory per array = %.1f MiB (= %.1f GiB).\n", n * sizeof(double) / 1048576.0,
           n * sizeof(double) / 1073741824.0);
    printf("Total memory required = %.1f MiB (= %.1f GiB).\n", 3.0 * n * sizeof(double) / 1048576.0,
           3.0 * n * sizeof(double) / 1073741824.0);
    printf("Each kernel will be executed %d times.\n", ntimes);
    printf(" The *best* time for each kernel (excluding the first iteration)\n");
    printf(" will be used to compute the reported bandwidth.\n");
    printf(HLINE);
    printf("Number of Threads counted = %i\n", threads);
    printf(HLINE);
    printf("Function    Best Rate MB/s  Avg time     Min time     Max time\n");
    for (int j = 0; j < 4; j++) {
        double mint = FLT_MAX, maxt = 0.0, avg = 0.0;
        for (int k = 1; k < ntimes; k++) {
            double t = times[j * ntimes + k];
            avg += t;
            if (t < mint) mint = t;
            if (t > maxt) maxt = t;
        }
        avg /= (ntimes - 1);
        printf("%s%12.1f  %11.6f  %11.6f  %11.6f\n", label[j], 1.0e-06 * bytes[j] / mint, avg, mint, maxt);
    }
    printf(HLINE);
    /* Validation as in stream.c: replay the recurrence on scalars, compare the average relative error. */
    double aj = 1.0, bj = 2.0, cj = 0.0;
    for (int k = 0; k < ntimes; k++) { cj = aj; bj = scalar * cj; cj = aj + bj; aj = bj + scalar * cj; }
    double ea = 0.0, eb = 0.0, ec = 0.0;
    for (long j = 0; j < n; j++) { ea += fabs(a[j] - aj); eb += fabs(b[j] - bj); ec += fabs(c[j] - cj); }
    ea /= n; eb /= n; ec /= n;
    const double epsilon = 1.e-13;
    if (ea / aj > epsilon || eb / bj > epsilon || ec / cj > epsilon) {
        printf("Failed Validation: AvgRelAbsErr a %e b %e c %e > epsilon (%e)\n", ea / aj, eb / bj, ec / cj,
               epsilon);
        return 4;
    }
    printf("Solution Validates: avg error less than %e on all three arrays\n", epsilon);
    printf(HLINE);
    free(a); free(b); free(c); free(times);
    return 0;
}
