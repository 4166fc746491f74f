// What one io_uring submission of many sends saves over one send(2) each: the cost the fan-out pays per delivery.
// N loopback TCP connections; a reader thread on CPU 1 drains them all (epoll); the sending thread on CPU 0 sends a
// 192-byte message to each of the N sockets per round, 1 ms apart, either one send(2) each (mode 0) or all of them
// in one io_uring submission (mode 1), and prints its own CPU (user + kernel) per send.
//
//   apt-get install -y liburing-dev
//   gcc -O2 -o /tmp/send_batch_bench loadtest/compare/send_batch_bench.c -luring -lpthread
//   /tmp/send_batch_bench 0 1000 300; /tmp/send_batch_bench 1 1000 300   # mode, connections, rounds
#define _GNU_SOURCE
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <time.h>
#include <sys/resource.h>
#define N 1000
int cli[N], srv[N];
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static double tcpu(){struct timespec t;clock_gettime(CLOCK_THREAD_CPUTIME_ID,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static void pin(int c){cpu_set_t s;CPU_ZERO(&s);CPU_SET(c,&s);pthread_setaffinity_np(pthread_self(),sizeof s,&s);}
void* reader(void*a){pin(1);int ep=epoll_create1(0);for(int i=0;i<N;i++){struct epoll_event e={.events=EPOLLIN,.data.fd=cli[i]};epoll_ctl(ep,EPOLL_CTL_ADD,cli[i],&e);}
 char buf[65536];struct epoll_event ev[256];for(;;){int n=epoll_wait(ep,ev,256,-1);for(int i=0;i<n;i++){while(recv(ev[i].data.fd,buf,sizeof buf,MSG_DONTWAIT)>0);}}}
int main(int argc,char**argv){int mode=atoi(argv[1]);int n=argc>2?atoi(argv[2]):N;int rounds=argc>3?atoi(argv[3]):2000;
 int l=socket(AF_INET,SOCK_STREAM,0);struct sockaddr_in a={.sin_family=AF_INET,.sin_addr.s_addr=htonl(0x7f000001)};int one=1;setsockopt(l,SOL_SOCKET,SO_REUSEADDR,&one,4);bind(l,(void*)&a,sizeof a);socklen_t al=sizeof a;getsockname(l,(void*)&a,&al);listen(l,4096);
 for(int i=0;i<N;i++){cli[i]=socket(AF_INET,SOCK_STREAM,0);connect(cli[i],(void*)&a,sizeof a);srv[i]=accept(l,0,0);setsockopt(srv[i],IPPROTO_TCP,TCP_NODELAY,&one,4);}
 pthread_t t;pthread_create(&t,0,reader,0);pin(0);
 char msg[192];memset(msg,'x',sizeof msg);
 struct io_uring ring;io_uring_queue_init(4096,&ring,0);
 struct timespec ts={0,1000000};
 double c0=tcpu(),w0=now();long sent=0;
 for(int r=0;r<rounds;r++){
  if(mode==0){for(int i=0;i<n;i++){if(send(srv[i],msg,sizeof msg,MSG_DONTWAIT|MSG_NOSIGNAL)==sizeof msg)sent++;}}
  else {for(int i=0;i<n;i++){struct io_uring_sqe*s=io_uring_get_sqe(&ring);io_uring_prep_send(s,srv[i],msg,sizeof msg,MSG_DONTWAIT|MSG_NOSIGNAL);s->user_data=i;}
   io_uring_submit(&ring);struct io_uring_cqe*c;unsigned head,cnt=0;io_uring_for_each_cqe(&ring,head,c){if(c->res==sizeof msg)sent++;cnt++;}io_uring_cq_advance(&ring,cnt);if(cnt!=n)fprintf(stderr,"only %u cqes\n",cnt);}
  nanosleep(&ts,0);
 }
 double c1=tcpu(),w1=now();
 printf("mode %d n %d: %ld sends, %.2f us cpu per send (wall %.2fs)\n",mode,n,sent,(c1-c0)*1e6/sent,w1-w0);
}
